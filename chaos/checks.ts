/**
 * What every phase ends with, after the load stopped and the platform settled:
 * - the benchmark's invariants read from the databases (seats sold once, money conserved, every saga terminal,
 *   none FAILED: bench/checks.ts);
 * - the platform's own consistency check (full), the outbox drained, the ranking equal to the confirmed sales,
 *   a RESERVATION_CONFIRMED notification for every confirmed booking;
 * - the shoppers' own record: every booking a shopper was told is CONFIRMED is still CONFIRMED and paid once,
 *   every cancellation it was told about happened, no reservation exists that a shopper was not told about
 *   (beyond the holds whose answer it never got), its wallet holds exactly what it was told it charged minus
 *   what its bookings cost.
 * And the availability figures of the phase, from the recorded attempts and confirmations.
 */
import { commonChecks, Sql, type Check } from "../bench/checks";
import type { Attempt, Population } from "./clients";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface Settled {
	ms: number;
	sagasOpen: number;
	outboxPending: number;
}

/**
 * Waits until every saga is terminal, every outbox row is published, every confirmed booking has its notification
 * and the consistency check is clean, or
 * `waitMs` passed (events retry with growing delays after a server outage, so the projections can lag behind).
 */
export async function settle(sql: Sql, consistency: () => Promise<{ ok: boolean }>, waitMs: number): Promise<Settled> {
	const t0 = Date.now();
	let sagasOpen = 0;
	let outboxPending = 0;
	for (;;) {
		try {
			sagasOpen = await sql.scalar("saga", "SELECT COUNT(*) FROM saga_instances WHERE status IN ('RUNNING', 'COMPENSATING', 'FAILED')");
			outboxPending = 0;
			for (const db of ["reservation", "payment"]) outboxPending += await sql.scalar(db, "SELECT COUNT(*) FROM outbox_events WHERE processed = 0");
			if (sagasOpen === 0 && outboxPending === 0 && (await unnotified(sql)).missing.length === 0 && (await consistency().catch(() => ({ ok: false }))).ok)
				break;
		} catch {
			/* a server is still coming back */
		}
		if (Date.now() - t0 > waitMs) break;
		await sleep(2000);
	}
	return { ms: Date.now() - t0, sagasOpen, outboxPending };
}

export async function invariantChecks(
	sql: Sql,
	pop: Population,
	consistencyReport: { ok: boolean; checks: { name: string; ok: boolean; details: unknown }[] } | undefined
): Promise<Check[]> {
	const { checks } = await commonChecks(sql, 5_000);

	if (consistencyReport) {
		for (const c of consistencyReport.checks)
			checks.push({ name: `consistency check: ${c.name}`, ok: c.ok, details: c.ok ? "ok" : JSON.stringify(c.details).slice(0, 400) });
	} else checks.push({ name: "consistency check answered", ok: false, details: "no answer from GET /api/admin/consistency?full=true" });

	let pending = 0;
	for (const db of ["reservation", "payment"]) pending += await sql.scalar(db, "SELECT COUNT(*) FROM outbox_events WHERE processed = 0");
	checks.push({ name: "outbox drained", ok: pending === 0, details: `${pending} unpublished outbox rows` });

	const { confirmed, missing } = await unnotified(sql);
	checks.push({
		name: "a notification for every confirmed booking",
		ok: missing.length === 0,
		details: `${confirmed} confirmed, ${missing.length} without RESERVATION_CONFIRMED${missing.length ? `: ${missing.slice(0, 3).join(", ")}` : ""}`
	});

	checks.push(...(await shopperChecks(sql, pop)));
	return checks;
}

/** Reservations that ever were confirmed (now CONFIRMED, or cancelled after it) without a RESERVATION_CONFIRMED notification. */
async function unnotified(sql: Sql): Promise<{ confirmed: number; missing: string[] }> {
	const everConfirmed = await sql.query(
		"reservation",
		"SELECT id FROM reservations WHERE status = 'CONFIRMED' OR (status = 'CANCELLED' AND paid_saga_id IS NOT NULL)"
	);
	const notified = new Set<string>();
	for (const r of await sql.query("notification", "SELECT data FROM notifications WHERE type = 'RESERVATION_CONFIRMED'")) {
		try {
			const d = JSON.parse(String(r.data)) as { reservationId?: string };
			if (d.reservationId) notified.add(d.reservationId);
		} catch {
			/* not ours */
		}
	}
	return { confirmed: everConfirmed.length, missing: everConfirmed.map(r => String(r.id)).filter(id => !notified.has(id)) };
}

/** The shoppers' record against the databases. */
async function shopperChecks(sql: Sql, pop: Population): Promise<Check[]> {
	const rows = await sql.query("reservation", "SELECT id, user_id, status, amount FROM reservations");
	const byId = new Map(rows.map(r => [String(r.id), r]));
	const payments = await sql.query("payment", "SELECT reservation_id, status FROM payments WHERE status IN ('COMPLETED', 'REFUNDED')");
	const paidCount = new Map<string, number>();
	for (const p of payments) paidCount.set(String(p.reservation_id), (paidCount.get(String(p.reservation_id)) ?? 0) + 1);
	const ledger = await sql.query("payment", "SELECT user_id, type, SUM(amount) AS total FROM point_transactions GROUP BY user_id, type");
	const wallets = new Map((await sql.query("payment", "SELECT user_id, balance FROM wallets")).map(w => [String(w.user_id), Number(w.balance)]));
	const ledgerOf = (user: string, type: string) => Number(ledger.find(l => String(l.user_id) === user && l.type === type)?.total ?? 0);

	const undone: string[] = [];
	const notCancelled: string[] = [];
	const paidTwice: string[] = [];
	const strangers: string[] = [];
	const walletWrong: string[] = [];
	let told = 0;
	let unresolved = 0;
	let rejected = 0;
	for (const s of pop.shoppers) {
		unresolved += s.unresolvedHolds;
		rejected += s.rejectedHolds;
		for (const b of s.bookings.values()) {
			const row = byId.get(b.id);
			if ((paidCount.get(b.id) ?? 0) > 1) paidTwice.push(b.id);
			if (b.told === "CONFIRMED") {
				told++;
				// Cancelled by the shopper's own request whose answer it never got (a 504 that ran later) is not undone.
				const ownCancel = b.cancelRequested && row?.status === "CANCELLED";
				if (!ownCancel && (!row || row.status !== "CONFIRMED" || (paidCount.get(b.id) ?? 0) !== 1))
					undone.push(`${b.id} is ${row?.status ?? "missing"} with ${paidCount.get(b.id) ?? 0} payments`);
			}
			if (b.told === "CANCELLED" && row?.status !== "CANCELLED") notCancelled.push(`${b.id} is ${row?.status ?? "missing"}`);
		}
		// Reservations of this shopper it never heard of: only a hold whose answer it lost may have made one.
		const own = rows.filter(r => String(r.user_id) === s.id && !s.bookings.has(String(r.id)));
		if (own.length > s.unresolvedHolds)
			strangers.push(
				`${s.email}: ${own.length} unknown reservations (${own.map(r => `${r.id} ${r.status}`).join(", ")}), ${s.unresolvedHolds} holds without an answer`
			);
		// Wallet: what it was told it charged, minus what its payments cost, plus what was refunded.
		const balance = wallets.get(s.id) ?? 0;
		const expected = s.charged - ledgerOf(s.id, "PAYMENT") + ledgerOf(s.id, "REFUND");
		if (balance !== expected || ledgerOf(s.id, "CHARGE") !== s.charged)
			walletWrong.push(`${s.email}: balance ${balance}, told charged ${s.charged}, ledger charged ${ledgerOf(s.id, "CHARGE")}, expected ${expected}`);
	}
	return [
		{
			name: "every booking a shopper was told CONFIRMED is CONFIRMED and paid once",
			ok: undone.length === 0,
			details: `${told} told CONFIRMED; ${undone.length} undone${undone.length ? `: ${undone.slice(0, 3).join("; ")}` : ""}`
		},
		{
			name: "every cancellation a shopper was told happened",
			ok: notCancelled.length === 0,
			details: `${notCancelled.length} not cancelled${notCancelled.length ? `: ${notCancelled.slice(0, 3).join("; ")}` : ""}`
		},
		{ name: "no booking paid twice", ok: paidTwice.length === 0, details: `${paidTwice.length} reservations with two payments` },
		{
			name: "a 4xx changed nothing (no reservation a shopper was not told about)",
			ok: strangers.length === 0,
			details: `${rejected} holds refused with a 4xx, ${unresolved} without an answer; ${strangers.length} shoppers with unknown reservations${strangers.length ? `: ${strangers.slice(0, 2).join("; ")}` : ""}`
		},
		{
			name: "every wallet matches what its shopper was told",
			ok: walletWrong.length === 0,
			details: `${walletWrong.length} wallets off${walletWrong.length ? `: ${walletWrong.slice(0, 2).join("; ")}` : ""}`
		}
	];
}

export interface Availability {
	/** Confirmations per second in the 15 s before the fault. */
	baselinePerSec: number;
	/** Non-2xx answers (and broken connections) by status, from the fault until 5 s after recovery. */
	errors: Record<string, number>;
	/** Attempts in that window. */
	attempts: number;
	/** From the fault (a node fault) or the server's return (a server fault) to the first confirmation; null: none. */
	firstSuccessS: number | null;
	/** From the same moment until confirmations run at half the baseline rate (over 2 s); null: never in the phase. */
	halfRateS: number | null;
}

/**
 * `faultAt`: when the fault was injected; `backAt`: when the server returned (or the node was resumed), the same as
 * faultAt for a kill; `from`: which of the two the recovery times count from.
 */
export function availability(
	attempts: Attempt[],
	confirmations: number[],
	faultAt: number,
	backAt: number,
	endAt: number,
	from: "fault" | "back"
): Availability {
	const before = confirmations.filter(t => t >= faultAt - 15_000 && t < faultAt).length;
	const baselinePerSec = before / 15;
	const errors: Record<string, number> = {};
	let n = 0;
	for (const a of attempts) {
		if (a.t < faultAt || a.t > backAt + 5000) continue;
		n++;
		if (a.status === "net" || a.status >= 300) {
			const k = `${a.status}${a.type ? ` ${a.type}` : ""}`;
			errors[k] = (errors[k] ?? 0) + 1;
		}
	}
	const origin = from === "fault" ? faultAt : backAt;
	const after = confirmations.filter(t => t >= origin && t <= endAt).sort((a, b) => a - b);
	const firstSuccessS = after.length ? (after[0] - origin) / 1000 : null;
	let halfRateS: number | null = null;
	const need = Math.max(1, (baselinePerSec / 2) * 2);
	for (let i = 0; i < after.length; i++) {
		// The first 2 s window, starting at a confirmation, that holds at least half the baseline's confirmations.
		let j = i;
		while (j < after.length && after[j] < after[i] + 2000) j++;
		if (j - i >= need) {
			halfRateS = (after[i] - origin) / 1000;
			break;
		}
	}
	return { baselinePerSec: Math.round(baselinePerSec * 10) / 10, errors, attempts: n, firstSuccessS, halfRateS };
}
