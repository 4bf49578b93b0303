/** Pure rules of the reservation context, tested without a broker. */

export type ReservationStatus = "PENDING" | "PAYING" | "CONFIRMED" | "CANCELLING" | "CANCELLED" | "EXPIRED";

export interface ReservationRow {
	id: string;
	user_id: string;
	concert_id: string;
	schedule_id: string;
	status: ReservationStatus;
	amount: number | string;
	expires_at: Date | string;
	saga_id: string | null;
	paid_saga_id: string | null;
	payment_id: string | null;
	previous_status: ReservationStatus | null;
	refund_amount: number | string | null;
	created_at: Date | string;
	updated_at: Date | string;
}

export interface SeatRow {
	reservation_id: string;
	seat_id: string;
	label: string;
	grade: string;
	price: number | string;
}

export interface ReservationView {
	id: string;
	status: ReservationStatus;
	userId: string;
	concertId: string;
	scheduleId: string;
	seats: { id: string; label: string; grade: string; price: number }[];
	amount: number;
	expiresAt: string;
	createdAt: string;
	updatedAt: string;
	refund?: { amount: number };
}

/** MariaDB hands back Dates; SQLite the `sqlTime` text (UTC without a zone). */
const iso = (d: Date | string): string =>
	(d instanceof Date ? d : new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(d) ? d : `${d.replace(" ", "T")}Z`)).toISOString();

/** The API's view; CANCELLING shows as it is (a cancellation in flight), PAYING likewise. */
export function toView(row: ReservationRow, seats: SeatRow[]): ReservationView {
	const view: ReservationView = {
		id: row.id,
		status: row.status,
		userId: row.user_id,
		concertId: row.concert_id,
		scheduleId: row.schedule_id,
		seats: seats
			.filter(s => s.reservation_id === row.id)
			.map(s => ({ id: s.seat_id, label: s.label, grade: s.grade, price: Number(s.price) })),
		amount: Number(row.amount),
		expiresAt: iso(row.expires_at),
		createdAt: iso(row.created_at),
		updatedAt: iso(row.updated_at)
	};
	if (row.refund_amount !== null && row.refund_amount !== undefined) view.refund = { amount: Number(row.refund_amount) };
	return view;
}

/** Can a payment start? PENDING and not past its hold. */
export function payable(row: Pick<ReservationRow, "status" | "expires_at">, now: Date): boolean {
	return row.status === "PENDING" && new Date(iso(row.expires_at)).getTime() > now.getTime();
}

/** Which cancellation saga fits: a PENDING one frees its holds, a CONFIRMED one also refunds and unsells. */
export function cancelSagaType(status: ReservationStatus): "CancelPendingReservation" | "CancelConfirmedReservation" | null {
	if (status === "PENDING") return "CancelPendingReservation";
	if (status === "CONFIRMED") return "CancelConfirmedReservation";
	return null;
}

/** seatIds must be 1..4 distinct ids. Returns the offending field errors, empty when fine. */
export function seatIdProblems(seatIds: string[]): string[] {
	const problems: string[] = [];
	if (new Set(seatIds).size !== seatIds.length) problems.push("seatIds must not repeat a seat");
	return problems;
}
