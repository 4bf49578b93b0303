/**
 * Pure rules of the waiting room (docs/DESIGN.md section 4 step 1), tested without a broker or a store.
 *
 * A queue token is `<concertId>.<tokenId>`: the concert part lets every operation on a token find its concert's
 * keys from the token alone (one store round trip for a status read, no token->concert lookup first); the
 * `tokenId` part is 128 random bits, so a token cannot be guessed from another one. The binding to a user lives
 * in the store, next to the token id.
 */
import crypto from "crypto";

/** A live token: in the pre-queue (before the sale opens), waiting in line, or admitted. */
export type QueueStatus = "PRE_QUEUE" | "WAITING" | "ACTIVE";
/** Why a token is no longer in the waiting room: lapsed or unpolled, left, or its purchase is done. */
export type GoneReason = "EXPIRED" | "LEFT" | "COMPLETED";
/** A closed line: nothing left to sell, or the sale is over. */
export type LineState = "SOLD_OUT" | "CLOSED";
/** Every status a token read can answer (docs/API.md, Waiting room). */
export type TokenStatus = QueueStatus | GoneReason | LineState;

/** Concert ids the queue accepts: what fits in a store key without escaping. */
export const CONCERT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const TOKEN_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/** 16 random bytes, base64url: 22 characters, 128 bits. */
export function newTokenId(random: (n: number) => Buffer = crypto.randomBytes): string {
	return random(16).toString("base64url");
}

export function formatToken(concertId: string, tokenId: string): string {
	return `${concertId}.${tokenId}`;
}

/** The parts of a well-formed token, or null (a malformed token is treated as an unknown one). */
export function parseToken(token: string): { concertId: string; tokenId: string } | null {
	const dot = token.lastIndexOf(".");
	if (dot <= 0) return null;
	const concertId = token.slice(0, dot);
	const tokenId = token.slice(dot + 1);
	if (!CONCERT_ID_PATTERN.test(concertId) || !TOKEN_ID_PATTERN.test(tokenId)) return null;
	return { concertId, tokenId };
}

/** What the store knows about one token at one instant (its own clock: `now`). */
export interface QueueEntry {
	tokenId: string;
	userId: string;
	status: QueueStatus;
	/** 1-based place in the waiting line; 0 when ACTIVE. */
	position: number;
	/** Epoch ms when an ACTIVE token lapses; null while WAITING. */
	expiresAt: number | null;
	/** Admissions into this concert's active set during the last 60 s of store time. */
	admittedLastMinute: number;
	/** The store's clock when the entry was read (epoch ms). */
	now: number;
	/** When the sale opens (epoch ms), if the line was told; a PRE_QUEUE token is admitted from then. */
	opensAt: number | null;
}

export interface EtaInput {
	status: QueueStatus;
	position: number;
	admittedLastMinute: number;
	maxActive: number;
	activeTtlSec: number;
}

/**
 * Seconds until a waiting token is likely admitted: position / admissions-per-second from the admission rate
 * measured over the last minute, but never more than the bound that holds whatever the rate: every active slot
 * frees within one lifetime, so the whole active set turns over every `activeTtlSec` and position p is admitted
 * within `ceil(p / maxActive)` lifetimes. With no admission measured yet, that bound is the answer.
 */
export function etaSeconds(input: EtaInput): number {
	if (input.status === "ACTIVE" || input.position <= 0) return 0;
	if (input.status === "PRE_QUEUE") return 0;
	const bound = Math.ceil(input.position / Math.max(1, input.maxActive)) * input.activeTtlSec;
	if (input.admittedLastMinute <= 0) return bound;
	return Math.min(bound, Math.ceil((input.position * 60) / input.admittedLastMinute));
}

/** The token as docs/API.md shows it: `{token, concertId, status, position, etaSeconds, expiresAt}`. */
export interface TokenView {
	token: string;
	concertId: string;
	status: TokenStatus;
	position: number;
	etaSeconds: number;
	expiresAt: string | null;
	/** When the sale opens: set while the token is in the pre-queue. */
	opensAt?: string;
}

export function toTokenView(concertId: string, entry: QueueEntry, limits: { maxActive: number; activeTtlSec: number }): TokenView {
	const view: TokenView = {
		token: formatToken(concertId, entry.tokenId),
		concertId,
		status: entry.status,
		position: entry.status === "WAITING" ? entry.position : 0,
		etaSeconds:
			entry.status === "PRE_QUEUE" && entry.opensAt ? Math.max(0, Math.ceil((entry.opensAt - entry.now) / 1000)) : etaSeconds({ ...entry, ...limits }),
		expiresAt: entry.expiresAt === null ? null : new Date(entry.expiresAt).toISOString()
	};
	if (entry.status === "PRE_QUEUE" && entry.opensAt) view.opensAt = new Date(entry.opensAt).toISOString();
	return view;
}

/** A token that is no longer live (left, lapsed, done, or its line closed), as docs/API.md shows it. */
export function endedTokenView(concertId: string, tokenId: string, status: GoneReason | LineState): TokenView {
	return { token: formatToken(concertId, tokenId), concertId, status, position: 0, etaSeconds: 0, expiresAt: null };
}

/**
 * Is this entry an ACTIVE token of `userId` for `concertId`? The single rule behind `validate` (queue-gated
 * routes) so a waiting, lapsed, foreign or other-concert token is refused the same way.
 */
export function isActiveFor(entry: QueueEntry | null, token: { concertId: string }, expect: { userId: string; concertId: string }): entry is QueueEntry {
	return (
		entry !== null &&
		entry.status === "ACTIVE" &&
		entry.userId === expect.userId &&
		token.concertId === expect.concertId &&
		entry.expiresAt !== null &&
		entry.expiresAt > entry.now
	);
}
