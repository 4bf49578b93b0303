/** @type {import('jest').Config} */
module.exports = {
	testEnvironment: "node",
	roots: ["<rootDir>/test"],
	testMatch: ["**/*.test.ts"],
	transform: {
		// Type checking is `npm run typecheck`; jest only transpiles, which keeps the suite fast.
		"^.+\\.ts$": ["ts-jest", {}]
	},
	testTimeout: 60000,
	// Integration suites start brokers, servers and child processes: run files one at a time (see `npm test`).
	maxWorkers: 1,
	verbose: false
};
