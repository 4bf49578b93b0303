/**
 * How a platform node is started from source: Node with ts-node (transpile only) running moleculer-runner with our
 * config and service mask. `npm run cluster`, the test harness and the benchmark start nodes the same way, so a
 * node in a test is a node as users run it.
 */
export const RUNNER_ARGS: readonly string[] = [
	"-r",
	"ts-node/register/transpile-only",
	"node_modules/moleculer/bin/moleculer-runner.js",
	"--config",
	"moleculer.config.ts",
	"--mask",
	"**/*.service.ts"
];
