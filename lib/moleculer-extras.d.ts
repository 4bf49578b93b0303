/**
 * Schema extras our mixins and the gateway read (docs/DESIGN.md section 1: module augmentation for schema extras).
 * Type parameters repeat the original declarations: interfaces merge only when they match.
 */
import "moleculer/src/service";

declare module "moleculer/src/service" {
	interface ServiceSchema<TSettings, TMethods, TVars, TThis> {
		/** moleculer-db: the service's main model definition. */
		model?: unknown;
	}
	interface ActionSchema<TThis> {
		/**
		 * Who may call this action through the gateway: "user" (default: a valid access token), "admin" (the admin
		 * role) or false (anyone, e.g. login). Read by the gateway's authorize hook.
		 */
		auth?: "user" | "admin" | false;
	}
}
