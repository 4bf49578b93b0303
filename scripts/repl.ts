/**
 * `npm run repl`: a broker node with no services that joins a running cluster over NATS and opens the
 * Moleculer REPL, so an operator can `call` any action, `nodes`, `services`, `actions`, `events`... (moleculer-cli
 * 0.8 speaks protocol v4 and cannot join 0.15 nodes, hence our own node). Same NAMESPACE as the cluster: a REPL
 * that sees no other node within 3 s of its start says so (namespace, transporter, what to check), and so does
 * every SERVICE_NOT_FOUND it gets.
 */
import os from "os";
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { ConfigError, loadConfig } from "../lib/config";
import { ReplHintsMiddleware, warnIfAlone } from "../lib/repl-commands";
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
	// A REPL in another NAMESPACE (or on another NATS, or with another CLUSTER_SECRET) sees no node: say so at start
	// and with every SERVICE_NOT_FOUND, instead of letting every command fail without a reason.
	const reach = { namespace: config.namespace, transporter: config.transporter?.url };
	const options = brokerOptions({ ...config, nodeID });
	const broker = new ServiceBroker({ ...options, nodeID, middlewares: [...(options.middlewares ?? []), ReplHintsMiddleware(reach)] });
	await broker.start();
	await warnIfAlone(broker, reach);
	await broker.repl();
}

main().catch(err => {
	process.stderr.write(`${(err as Error).stack}\n`);
	process.exit(1);
});
