/**
 * `npm run repl`: a broker node with no services that joins a running cluster over NATS and opens the
 * Moleculer REPL, so an operator can `call` any action, `nodes`, `services`, `actions`, `events`... (moleculer-cli
 * 0.8 speaks protocol v4 and cannot join 0.15 nodes, hence our own node). Same NAMESPACE as the cluster.
 */
import os from "os";
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { ConfigError, loadConfig } from "../lib/config";
import { localClusterEnv } from "./local-env";

async function main(): Promise<void> {
	const env = { ...localClusterEnv(), METRICS_PORT: "0" };
	let config;
	try {
		config = loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) {
			process.stderr.write(`${err.message}\n`);
			process.exit(1);
		}
		throw err;
	}
	const nodeID = `repl-${os.hostname()}-${process.pid}`;
	const broker = new ServiceBroker({ ...brokerOptions({ ...config, nodeID }), nodeID });
	await broker.start();
	await broker.repl();
}

main().catch(err => {
	process.stderr.write(`${(err as Error).stack}\n`);
	process.exit(1);
});
