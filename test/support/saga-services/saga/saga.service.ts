/**
 * Test-only saga node: the real saga service with the test definitions added and fast leases. Spawned nodes load
 * this directory (env.spawn([path.resolve("test/support/saga-services/saga"), ...])) instead of services/saga.
 */
import { SAGA_DEFINITIONS } from "../../../../sagas/registry";
import SagaService, { type SagaSettings } from "../../../../services/saga/saga.service";
import { FAST_SETTINGS, TEST_DEFINITIONS } from "../definitions";

export function testSagaSchema(settings: Partial<SagaSettings> = {}): typeof SagaService {
	return {
		...SagaService,
		settings: { ...SagaService.settings!, ...FAST_SETTINGS, ...settings },
		methods: {
			...SagaService.methods!,
			sagaDefinitions() {
				return [...SAGA_DEFINITIONS, ...TEST_DEFINITIONS];
			}
		}
	};
}

export default testSagaSchema();
