/**
 * A producer node in its own OS process (the test producer service on a broker built by moleculer.config.ts from
 * the environment), so a test can kill -9 a relay in the middle of a batch.
 *
 *   node -r ts-node/register/transpile-only test/support/event-services/producer-node.ts
 */
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../../../lib/config";
import { brokerOptions } from "../../../moleculer.config";
import { ProducerService } from "./producer.service";

const config = loadConfig(process.env);
const broker = new ServiceBroker({ ...brokerOptions(config), nodeID: config.nodeID });
broker.createService(ProducerService);
broker.start().then(
	() => process.stdout.write("producer node ready\n"),
	err => {
		process.stderr.write(`producer node failed: ${(err as Error).message}\n`);
		process.exit(1);
	}
);
