/**
 * The saga service's actions as other contexts call them (type-only; see lib/actions.ts). The booking contexts
 * start their sagas through `saga.start` and look them up through `saga.find`.
 */
import type { SagaState, SagaStatus } from "../../sagas/types";

/** What `saga.start` and `saga.find` answer (and the shape callers branch on). */
export interface SagaView {
	id: string;
	type: string;
	key: string;
	status: SagaStatus;
	result?: unknown;
	error?: SagaState["error"];
}

export interface SagaApi {
	/** Starts the saga of `key` once (a repeat answers the same saga) and waits up to `waitMs` for its end. */
	"saga.start": { params: { type: string; key: string; data?: Record<string, unknown>; waitMs?: number }; result: SagaView };
	/** One saga by id or by key (404 when none, or when both are given and disagree). */
	"saga.find": { params: { id?: string; key?: string }; result: SagaView };
}
