/**
 * Preloaded into every platform node by `npm run bench -- <scenario> --cpu-prof` (through NODE_OPTIONS, which
 * refuses --cpu-prof itself): samples the CPU from start to exit with the in-process inspector and writes
 * `<node>-<pid>.cpuprofile` into BENCH_CPU_PROF_DIR when the node exits. Plain JavaScript on purpose: it loads
 * before ts-node. Only moleculer-runner processes are profiled, not the cluster launcher.
 */
"use strict";
const fs = require("fs");
const path = require("path");
const inspector = require("inspector");

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir && process.argv.some(a => a.includes("moleculer-runner"))) {
	const name = (process.env.NODE_ID || "node").replace(/[^A-Za-z0-9_-]/g, "_");
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
			fs.mkdirSync(dir, { recursive: true });
			fs.writeFileSync(path.join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
		});
	});
}
