/**
 * Preloaded into every platform node by the bench (through NODE_OPTIONS=--require, which refuses --cpu-prof
 * itself). Plain JavaScript on purpose: it loads before ts-node. Only node processes (moleculer-runner or
 * scripts/node) are touched, not the cluster launcher. Two optional instruments, each switched on by its variable:
 *
 * - BENCH_CPU_PROF_DIR (`--cpu-prof`): samples the CPU from start to exit with the in-process inspector and writes
 *   `<node>-<pid>.cpuprofile` there when the node exits.
 * - BENCH_SQL_COUNT_DIR (`--sql-count`): counts every statement sent through mysql2 by database and statement shape
 *   (literals removed), and writes a snapshot `<node>-<pid>.<n>.json` on each SIGUSR2: the bench signals at the
 *   start and the end of the timed phase, so the difference is the timed phase's statements.
 */
"use strict";
const fs = require("fs");
const path = require("path");

// A platform node: moleculer-runner, or the project's runner around it (scripts/node.ts, compiled to
// dist/scripts/node.js), which is what `npm run cluster` and the bench's compiled runtime start.
const isNode = process.argv.some(a => a.includes("moleculer-runner") || /scripts[\\/]node\.(js|ts)$/.test(a));
const name = `${(process.env.NODE_ID || "node").replace(/[^A-Za-z0-9_-]/g, "_")}-${process.pid}`;

const profDir = process.env.BENCH_CPU_PROF_DIR;
if (isNode && profDir) {
	const inspector = require("inspector");
	const session = new inspector.Session();
	session.connect();
	session.post("Profiler.enable");
	session.post("Profiler.setSamplingInterval", { interval: 500 });
	session.post("Profiler.start");
	let written = false;
	process.on("exit", () => {
		if (written) return;
		written = true;
		// The in-process session answers synchronously, so this works inside an exit handler.
		session.post("Profiler.stop", (err, res) => {
			if (err || !res) return;
			fs.mkdirSync(profDir, { recursive: true });
			fs.writeFileSync(path.join(profDir, `${name}.cpuprofile`), JSON.stringify(res.profile));
		});
	});
}

const sqlDir = process.env.BENCH_SQL_COUNT_DIR;
if (isNode && sqlDir) {
	const counts = new Map();
	const shape = sql =>
		String(sql)
			.replace(/'(?:[^'\\]|\\.)*'/g, "?")
			.replace(/\b\d+\b/g, "N")
			.replace(/\(\?(?:,\s*\?)+\)/g, "(?...)")
			.replace(/\s+/g, " ")
			.trim()
			.slice(0, 110);
	const count = (conn, sql) => {
		const key = `${(conn && conn.config && conn.config.database) || "-"} | ${shape(typeof sql === "object" && sql ? sql.sql : sql)}`;
		counts.set(key, (counts.get(key) || 0) + 1);
	};
	const base = Object.getPrototypeOf(require("mysql2").Connection.prototype);
	for (const method of ["query", "execute"]) {
		const original = base[method];
		base[method] = function (sql, ...rest) {
			count(this, sql);
			return original.call(this, sql, ...rest);
		};
	}
	let n = 0;
	process.on("SIGUSR2", () => {
		fs.mkdirSync(sqlDir, { recursive: true });
		fs.writeFileSync(path.join(sqlDir, `${name}.${++n}.json`), JSON.stringify(Object.fromEntries(counts)));
	});
}
