/** The waiting room's actions as other contexts call them (type-only; see lib/actions.ts). */

export interface QueueApi {
	/**
	 * Is `token` the ACTIVE waiting-room token of `userId` for `concertId`? Answers it, or refuses with 403
	 * QUEUE_TOKEN_NOT_ACTIVE (with the caller's own token status) or 409 when the line is closed.
	 */
	"queue.validate": {
		params: { token: string; userId: string; concertId: string };
		result: { ok: true; token: string; concertId: string; userId: string; expiresAt: string };
	};
}
