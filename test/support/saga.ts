/**
 * Saga test helpers: in-process nodes built from schemas (the harness's `env.broker` loads services/<name> only,
 * and saga tests need the test-only saga node and fake participant of test/support/saga-services).
 */
import path from "path";
import { ServiceBroker, type BrokerOptions, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import type { SagaState } from "../../sagas/types";
import type { FakeStats } from "./saga-services/fake/fake.service";
import { waitFor, type TestEnv } from "./harness";

export const SAGA_NODE_DIR = path.resolve(__dirname, "saga-services/saga");
export const FAKE_DIR = path.resolve(__dirname, "saga-services/fake");
export const serviceFile = (name: string) => path.resolve(__dirname, "../../services", name, `${name}.service.ts`);

/** What `broker.createService` itself accepts: schemas of any settings, methods and vars. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyServiceSchema = ServiceSchema<any, any, any>;

export class SchemaNodes {
	private readonly brokers: ServiceBroker[] = [];

	constructor(private readonly env: TestEnv) {}

	/**
	 * A started broker of this run (same namespace, databases and store) with the given schemas, or service files
	 * (paths, loaded as moleculer-runner loads them: a file may export `(broker) => schema`).
	 */
	async node(
		schemas: (AnyServiceSchema | string)[],
		nodeID = `${this.env.id}-s${this.brokers.length}`,
		overrides: BrokerOptions = {}
	): Promise<ServiceBroker> {
		const config = { ...this.env.config, nodeID };
		const broker = new ServiceBroker({ ...brokerOptions(config), ...overrides, nodeID });
		for (const schema of schemas) {
			if (typeof schema === "string") broker.loadService(schema);
			else broker.createService(schema);
		}
		this.brokers.push(broker);
		await broker.start();
		return broker;
	}

	async stop(): Promise<void> {
		await Promise.all(this.brokers.map(b => b.stop().catch(() => undefined)));
	}
}

type SagaWithJournal = SagaState & {
	journal: { step: string; phase: string; status: string; attempts: number; owner: string | null }[];
	deadLetters: { id: string; status: string }[];
};

/** `nodeID` pins the call to one saga node (a killed node stays in the registry until its heartbeat times out). */
export function getSaga(broker: ServiceBroker, id: string, nodeID?: string): Promise<SagaWithJournal> {
	return broker.call("saga.get", { id }, nodeID ? { nodeID } : {});
}

/** Waits until the saga is in one of `statuses` and returns it with its journal. */
export async function waitSaga(broker: ServiceBroker, id: string, statuses: string[], timeoutMs = 10_000, nodeID?: string): Promise<SagaWithJournal> {
	let last: SagaWithJournal | undefined;
	await waitFor(
		async () => {
			last = await getSaga(broker, id, nodeID);
			return statuses.includes(last.status);
		},
		timeoutMs,
		`saga ${id} to reach ${statuses.join("/")}`
	);
	return last!;
}

export function fakeStats(broker: ServiceBroker, sagaId: string): Promise<FakeStats> {
	return broker.call("fake.stats", { sagaId });
}
