/**
 * Pure rules of the concert context, tested without a broker: seat-map generation, seat-id requests, pagination,
 * availability and seat status. Nothing here touches a database or the store.
 */
import { FieldValidationError } from "../../lib/errors";

/** A hold, a sale or a release covers 1..4 seats of one schedule (docs/API.md: reservations of 1..4 seats). */
export const MAX_SEATS_PER_REQUEST = 4;
/** Ids are UUIDs here, but anything short and key-safe is accepted (they become parts of store keys). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_ROWS = 26;
export const MAX_PER_ROW = 60;
export const MAX_SCHEDULES = 10;
export const DEFAULT_GRADE = "R";

export type SeatStatus = "AVAILABLE" | "HELD" | "SOLD";

export interface GradeSpec {
	/** Grade name, e.g. "VIP". */
	grade: string;
	/** How many rows, from the front (row A), get this grade; grades are laid out in the order given. */
	rows: number;
	price: number;
}

export interface SeatMapSpec {
	rows: number;
	perRow: number;
	/** Price of every row no grade claims (grade "R"). */
	price: number;
	grades?: GradeSpec[];
}

export interface SeatSpec {
	label: string;
	grade: string;
	price: number;
	row: number;
	col: number;
}

/** 0 -> "A", 25 -> "Z". */
export function rowLetter(row: number): string {
	if (!Number.isInteger(row) || row < 0 || row >= MAX_ROWS) throw new RangeError(`row out of range: ${row}`);
	return String.fromCharCode(65 + row);
}

/** Row 0, column 11 -> "A-12" (columns count from 1 on the ticket). */
export function seatLabel(row: number, col: number): string {
	return `${rowLetter(row)}-${col + 1}`;
}

/** Problems with a seat-map request, as validation fields; empty when it is fine. */
export function seatMapProblems(spec: SeatMapSpec): { field: string; type: string; message: string }[] {
	const problems: { field: string; type: string; message: string }[] = [];
	const claimed = (spec.grades ?? []).reduce((n, g) => n + g.rows, 0);
	if (claimed > spec.rows) {
		problems.push({ field: "seats.grades", type: "seatMap", message: "grades claim more rows than the map has" });
	}
	const names = (spec.grades ?? []).map(g => g.grade);
	if (new Set(names).size !== names.length) {
		problems.push({ field: "seats.grades", type: "unique", message: "grade names must be unique" });
	}
	if (claimed < spec.rows && names.includes(DEFAULT_GRADE)) {
		problems.push({ field: "seats.grades", type: "seatMap", message: `grade ${DEFAULT_GRADE} is the default for unclaimed rows` });
	}
	return problems;
}

/** The seats of one schedule: rows A.., columns 1..perRow, graded front to back. */
export function generateSeatMap(spec: SeatMapSpec): SeatSpec[] {
	const gradeOfRow: { grade: string; price: number }[] = [];
	for (const g of spec.grades ?? []) for (let i = 0; i < g.rows; i++) gradeOfRow.push({ grade: g.grade, price: g.price });
	const seats: SeatSpec[] = [];
	for (let row = 0; row < spec.rows; row++) {
		const { grade, price } = gradeOfRow[row] ?? { grade: DEFAULT_GRADE, price: spec.price };
		for (let col = 0; col < spec.perRow; col++) seats.push({ label: seatLabel(row, col), grade, price, row, col });
	}
	return seats;
}

/**
 * The seat ids of a hold/sale request: 1..4 distinct ids. Duplicates are a client error (422), not something to
 * quietly collapse: "hold A and A" is not a request for one seat.
 */
export function requestedSeatIds(seatIds: string[]): string[] {
	const problems: { field: string; type: string; message: string }[] = [];
	if (seatIds.length < 1 || seatIds.length > MAX_SEATS_PER_REQUEST) {
		problems.push({ field: "seatIds", type: "arrayLength", message: `1..${MAX_SEATS_PER_REQUEST} seats` });
	}
	if (new Set(seatIds).size !== seatIds.length) {
		problems.push({ field: "seatIds", type: "arrayUnique", message: "seat ids must be distinct" });
	}
	if (seatIds.some(id => !ID_PATTERN.test(id))) {
		problems.push({ field: "seatIds", type: "stringPattern", message: "invalid seat id" });
	}
	if (problems.length > 0) throw new FieldValidationError(problems);
	return [...seatIds];
}

export interface PageRequest {
	page: number;
	pageSize: number;
}

export function pageWindow({ page, pageSize }: PageRequest): { offset: number; limit: number } {
	return { offset: (page - 1) * pageSize, limit: pageSize };
}

/** Free seats = all - sold (database counter) - held (live holds); never negative. */
export function availableSeats(total: number, sold: number, held: number): number {
	return Math.max(0, total - sold - held);
}

/** SOLD (the database) wins over HELD (a lease in the store): a stale lease never hides a sale. */
export function seatStatus(seatId: string, sold: ReadonlySet<string>, held: ReadonlySet<string>): SeatStatus {
	if (sold.has(seatId)) return "SOLD";
	if (held.has(seatId)) return "HELD";
	return "AVAILABLE";
}

export function totalPrice(seats: { price: number }[]): number {
	return seats.reduce((sum, s) => sum + s.price, 0);
}

/** Parses an ISO-8601 time with an explicit zone (Z or ±hh:mm); anything else is rejected. */
export function parseStartsAt(value: string): Date | undefined {
	if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
	const d = new Date(value);
	return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A time read back from SQL (a Date from mysql2, a "YYYY-MM-DD HH:MM:SS.sss +00:00" string from SQLite). */
export function toIso(value: Date | string): string {
	return (value instanceof Date ? value : new Date(value)).toISOString();
}

/** A concert's sale window: null ends mean "since the concert exists" and "until each show starts". */
export interface SalesWindow {
	opensAt: string | null;
	closesAt: string | null;
}

/**
 * Where a schedule's sale stands at `now`: NOT_OPEN before the window opens, CLOSED from its close or from the
 * show's start (whichever comes first), OPEN in between. Holds, sales, payments and waiting-room entries follow it.
 */
export type SaleState = "NOT_OPEN" | "OPEN" | "CLOSED";

export function saleState(window: SalesWindow, showStartsAt: string, now: number): SaleState {
	if (window.opensAt !== null && now < Date.parse(window.opensAt)) return "NOT_OPEN";
	if (now >= Date.parse(showStartsAt)) return "CLOSED";
	if (window.closesAt !== null && now >= Date.parse(window.closesAt)) return "CLOSED";
	return "OPEN";
}

/**
 * The concert as a whole: NOT_OPEN before the window, CLOSED once the window closed or its last show started, else
 * OPEN. The waiting room takes entries while NOT_OPEN (the pre-queue) or OPEN.
 */
export function concertSaleState(window: SalesWindow, showsStartAt: string[], now: number): SaleState {
	const last = showsStartAt.reduce((m, s) => Math.max(m, Date.parse(s)), -Infinity);
	return saleState(window, Number.isFinite(last) ? new Date(last).toISOString() : new Date(0).toISOString(), now);
}

/** Problems with a sale window for shows at `showsStartAt` (admin input): open < close <= the last show. */
export function salesWindowProblems(opensAt: Date | null, closesAt: Date | null, showsStartAt: Date[]): { field: string; type: string; message: string }[] {
	const problems: { field: string; type: string; message: string }[] = [];
	const last = Math.max(...showsStartAt.map(d => d.getTime()));
	if (opensAt && closesAt && opensAt.getTime() >= closesAt.getTime()) {
		problems.push({ field: "sales.closesAt", type: "dateMin", message: "sales must close after they open" });
	}
	if (closesAt && closesAt.getTime() > last) {
		problems.push({ field: "sales.closesAt", type: "dateMax", message: "sales must close by the last show" });
	}
	if (opensAt && opensAt.getTime() >= last) {
		problems.push({ field: "sales.opensAt", type: "dateMax", message: "sales must open before the last show" });
	}
	return problems;
}
