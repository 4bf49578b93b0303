/**
 * The consistency rules of the ops check (seed 000 section 4.3: "a periodic consistency-verification batch"), as
 * pure functions over what the owning services' audit actions answer. Each rule lists its offenders by id; an
 * empty list is a kept invariant. The ops service gathers the inputs, runs these twice a moment apart and reports
 * only what both runs saw, so a saga between two steps is not reported as drift.
 */

export type ReservationStatus = "PENDING" | "PAYING" | "CONFIRMED" | "CANCELLING" | "CANCELLED" | "EXPIRED";

export interface AuditReservation {
	id: string;
	status: ReservationStatus;
	scheduleId: string;
	amount: number;
	seatIds: string[];
	paymentId: string | null;
	paidSagaId: string | null;
	/** The saga that owns the current transition (ConfirmReservation while PAYING, a Cancel saga while CANCELLING). */
	sagaId?: string | null;
	updatedAt?: string;
}

export interface AuditSale {
	scheduleId: string;
	seatId: string;
	reservationId: string;
}

export interface AuditHold {
	scheduleId: string;
	seatId: string;
	owner: string;
}

export interface AuditPayment {
	id: string;
	sagaId: string;
	reservationId: string | null;
	amount: number;
	status: string;
}

export interface SagaRow {
	id: string;
	type: string;
	status: string;
	step?: string | null;
	updatedAt: string;
}

/** ok: nothing found; drift: findings listed; unavailable: a source could not be read, so nothing is claimed. */
export type CheckStatus = "ok" | "drift" | "unavailable";

export interface CheckResult {
	name: string;
	ok: boolean;
	status?: CheckStatus;
	details: Record<string, unknown>;
}

export interface ConsistencyReport {
	ok: boolean;
	/** drift when any check drifted, else unavailable when any check could not read its sources, else ok. */
	status: CheckStatus;
	checkedAt: string;
	/** Full: every row; otherwise what changed since `since` (the last scheduled run minus the safety margin). */
	scope: { full: boolean; since: string | null };
	checks: CheckResult[];
}

const seatKey = (scheduleId: string, seatId: string) => `${scheduleId}\u0000${seatId}`;

/**
 * Seats SOLD against CONFIRMED reservations: no seat is in two CONFIRMED reservations; every sale belongs to a
 * CONFIRMED reservation that has that seat (a CANCELLING one still owns its sale until the cancel saga releases
 * it); every seat of a CONFIRMED reservation is sold to it.
 */
export function seatFindings(sales: AuditSale[], reservations: AuditReservation[]) {
	const byId = new Map(reservations.map(r => [r.id, r]));
	const confirmedBySeat = new Map<string, string[]>();
	for (const r of reservations) {
		if (r.status !== "CONFIRMED") continue;
		for (const seatId of r.seatIds) {
			const k = seatKey(r.scheduleId, seatId);
			confirmedBySeat.set(k, [...(confirmedBySeat.get(k) ?? []), r.id]);
		}
	}
	const soldTo = new Map(sales.map(s => [seatKey(s.scheduleId, s.seatId), s.reservationId]));

	const soldTwice = [...confirmedBySeat.entries()]
		.filter(([, ids]) => ids.length > 1)
		.map(([k, ids]) => {
			const [scheduleId, seatId] = k.split("\u0000");
			return { scheduleId, seatId, reservationIds: [...ids].sort() };
		});

	const soldWithoutReservation = sales
		.filter(s => {
			const r = byId.get(s.reservationId);
			if (!r || r.scheduleId !== s.scheduleId || !r.seatIds.includes(s.seatId)) return true;
			return r.status !== "CONFIRMED" && r.status !== "CANCELLING";
		})
		.map(s => ({
			scheduleId: s.scheduleId,
			seatId: s.seatId,
			reservationId: s.reservationId,
			reservationStatus: byId.get(s.reservationId)?.status ?? null
		}));

	const confirmedNotSold: { reservationId: string; scheduleId: string; seatId: string; soldTo: string | null }[] = [];
	for (const r of reservations) {
		if (r.status !== "CONFIRMED") continue;
		for (const seatId of r.seatIds) {
			const owner = soldTo.get(seatKey(r.scheduleId, seatId)) ?? null;
			if (owner !== r.id) confirmedNotSold.push({ reservationId: r.id, scheduleId: r.scheduleId, seatId, soldTo: owner });
		}
	}
	return { soldTwice, soldWithoutReservation, confirmedNotSold };
}

/**
 * Money against reservations: every CONFIRMED reservation has exactly one COMPLETED payment, of its amount, the
 * one it names; a COMPLETED payment belongs to a CONFIRMED reservation (or one in flight: PAYING, CANCELLING); a
 * REFUNDED payment no longer pays for a CONFIRMED reservation (its reservation was cancelled, or went back to
 * PENDING and then expired or was paid by another payment after a compensated saga).
 */
export function moneyFindings(reservations: AuditReservation[], payments: AuditPayment[]) {
	const byId = new Map(reservations.map(r => [r.id, r]));
	const completedBy = new Map<string, AuditPayment[]>();
	for (const p of payments) {
		if (p.status !== "COMPLETED" || !p.reservationId) continue;
		completedBy.set(p.reservationId, [...(completedBy.get(p.reservationId) ?? []), p]);
	}

	const confirmedWithoutPayment: { reservationId: string; amount: number; completedPayments: { id: string; amount: number }[] }[] = [];
	for (const r of reservations) {
		if (r.status !== "CONFIRMED") continue;
		const paid = completedBy.get(r.id) ?? [];
		const right = paid.length === 1 && paid[0].amount === r.amount && (r.paymentId === null || r.paymentId === paid[0].id);
		if (!right) confirmedWithoutPayment.push({ reservationId: r.id, amount: r.amount, completedPayments: paid.map(p => ({ id: p.id, amount: p.amount })) });
	}

	const completedWithoutReservation = payments
		.filter(p => p.status === "COMPLETED")
		.filter(p => {
			const r = p.reservationId ? byId.get(p.reservationId) : undefined;
			if (!r) return true;
			if (r.status === "PAYING" || r.status === "CANCELLING") return false;
			return r.status !== "CONFIRMED" || (r.paymentId !== null && r.paymentId !== p.id);
		})
		.map(p => ({
			paymentId: p.id,
			sagaId: p.sagaId,
			reservationId: p.reservationId,
			reservationStatus: (p.reservationId && byId.get(p.reservationId)?.status) || null
		}));

	const refundedButConfirmed = payments
		.filter(p => p.status === "REFUNDED")
		.filter(p => {
			const r = p.reservationId ? byId.get(p.reservationId) : undefined;
			return !r || (r.status === "CONFIRMED" && r.paymentId === p.id);
		})
		.map(p => ({ paymentId: p.id, reservationId: p.reservationId, reservationStatus: (p.reservationId && byId.get(p.reservationId)?.status) || null }));

	return { confirmedWithoutPayment, completedWithoutReservation, refundedButConfirmed };
}

/** A live hold belongs to a live reservation (PENDING or PAYING); anything else is an orphan lease. */
export function holdFindings(holds: AuditHold[], reservations: AuditReservation[]) {
	const byId = new Map(reservations.map(r => [r.id, r]));
	const orphanHolds = holds
		.filter(h => {
			const r = byId.get(h.owner);
			return !r || (r.status !== "PENDING" && r.status !== "PAYING") || r.scheduleId !== h.scheduleId;
		})
		.map(h => ({ scheduleId: h.scheduleId, seatId: h.seatId, owner: h.owner, reservationStatus: byId.get(h.owner)?.status ?? null }));
	return { orphanHolds };
}

/** Sagas RUNNING or COMPENSATING whose last change is older than `boundMs`. */
export function stuckSagas(rows: SagaRow[], now: number, boundMs: number) {
	return rows
		.filter(s => (s.status === "RUNNING" || s.status === "COMPENSATING") && now - Date.parse(s.updatedAt) > boundMs)
		.map(s => ({ id: s.id, type: s.type, status: s.status, step: s.step ?? null, updatedAt: s.updatedAt }));
}

/**
 * Reservations a saga left half way: PAYING or CANCELLING while their saga is FAILED (parked for an operator), or
 * while no saga of theirs runs (finished, unknown or none) for longer than `boundMs`. A reservation whose saga is
 * RUNNING or COMPENSATING is the saga's business (a saga stuck there is listed as a stuck saga).
 */
export function stuckReservations(rows: AuditReservation[], sagaStatus: Map<string, string | null>, now: number, boundMs: number) {
	return rows
		.filter(r => r.status === "PAYING" || r.status === "CANCELLING")
		.map(r => ({ r, saga: r.sagaId ? (sagaStatus.get(r.sagaId) ?? null) : null }))
		.filter(({ r, saga }) => {
			if (saga === "RUNNING" || saga === "COMPENSATING") return false;
			if (saga === "FAILED") return true;
			return r.updatedAt === undefined || now - Date.parse(r.updatedAt) > boundMs;
		})
		.map(({ r, saga }) => ({ reservationId: r.id, status: r.status, sagaId: r.sagaId ?? null, sagaStatus: saga, updatedAt: r.updatedAt ?? null }));
}

/**
 * The reservation ids a check's findings name (a sale's, a payment's or a hold's reservation): the incremental
 * check reads them again next time, so a drift it reported stays reported until it is fixed.
 */
export function findingReservationIds(details: Record<string, unknown>): string[] {
	const ids = new Set<string>();
	for (const v of Object.values(details)) {
		if (!Array.isArray(v)) continue;
		for (const item of v) {
			if (typeof item !== "object" || item === null) continue;
			const f = item as { reservationId?: unknown; reservationIds?: unknown; owner?: unknown };
			if (typeof f.reservationId === "string") ids.add(f.reservationId);
			if (typeof f.owner === "string") ids.add(f.owner);
			if (Array.isArray(f.reservationIds)) for (const id of f.reservationIds) if (typeof id === "string") ids.add(id);
		}
	}
	return [...ids].sort();
}

/** A check's status from its details: `error` (a source it could not read) is unavailable, never drift. */
export function checkStatus(details: Record<string, unknown>): CheckStatus {
	if (details.error !== undefined) return "unavailable";
	return noFindings(details) ? "ok" : "drift";
}

/** The report's status: any drift is drift; otherwise any unavailable check makes it unavailable. */
export function overallStatus(statuses: CheckStatus[]): CheckStatus {
	if (statuses.includes("drift")) return "drift";
	return statuses.includes("unavailable") ? "unavailable" : "ok";
}

/**
 * Keeps, in each list of `second`, only the entries that `first` had too (compared as JSON): what the two runs of
 * a check both saw. Non-list details come from `second`.
 */
export function confirmedFindings(first: Record<string, unknown>, second: Record<string, unknown>): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	for (const [k, v] of Object.entries(second)) {
		const before = first[k];
		if (Array.isArray(v) && Array.isArray(before)) {
			const seen = new Set(before.map(x => JSON.stringify(x)));
			out[k] = v.filter(x => seen.has(JSON.stringify(x)));
		} else out[k] = v;
	}
	return out;
}

/** True when every list in the details is empty (an `error` makes it false). */
export function noFindings(details: Record<string, unknown>): boolean {
	if (details.error !== undefined) return false;
	return Object.values(details).every(v => !Array.isArray(v) || v.length === 0);
}
