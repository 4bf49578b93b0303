/**
 * Gives a service `this.config` (the validated configuration) and `this.store` (the node's coordination store).
 * Services read settings through these, never through `process.env` (docs/STYLE.md practice 9).
 */
import type { ServiceSchema } from "moleculer";
import type { Config } from "../lib/config";
import { platformOf } from "../lib/platform";
import type { CoordinationStore } from "../lib/store";

export interface PlatformVars {
	config: Config;
	store: CoordinationStore;
}

export const PlatformMixin: Partial<ServiceSchema> = {
	created() {
		const platform = platformOf(this.broker);
		Object.defineProperty(this, "config", { value: platform.config, enumerable: true });
		// A getter: the store connection opens the first time a service actually uses it.
		Object.defineProperty(this, "store", { get: () => platform.store, enumerable: false });
	}
};
