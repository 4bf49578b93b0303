/**
 * Calls between contexts, typed by the callee's contract. Each context that others call declares its actions in a
 * type-only `services/<context>/<context>.api.ts` (action name -> params and result); the service's handler is
 * typed from the same entry and the caller goes through `callerOf`, so a renamed or retyped field fails
 * `npm run typecheck` at both ends instead of surfacing as `undefined` at run time.
 */
import type { CallingOptions, Context, ServiceBroker } from "moleculer";

/** One action as other contexts see it. */
export interface ActionContract {
	params: object;
	result: unknown;
}

/** A map of action names to contracts; interfaces qualify (no index signature needed). */
export type ActionContracts<C> = { [A in keyof C]: ActionContract };

export type Params<C extends ActionContracts<C>, A extends keyof C> = C[A]["params"];
export type Result<C extends ActionContracts<C>, A extends keyof C> = C[A]["result"];

export type TypedCall<C extends ActionContracts<C>> = <A extends keyof C & string>(
	action: A,
	params: Params<C, A>,
	opts?: CallingOptions
) => Promise<Result<C, A>>;

/** `ctx.call` (or, outside a request, `broker.call`) restricted to the actions of `C`, with their types. */
export function callerOf<C extends ActionContracts<C>>(via: Pick<Context, "call"> | Pick<ServiceBroker, "call">): TypedCall<C> {
	return (action, params, opts) => via.call(action, params, opts) as Promise<Result<C, typeof action>>;
}
