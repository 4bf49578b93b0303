/**
 * The catalog's actions as other contexts call them (type-only; see lib/actions.ts): the handlers in
 * concert.service.ts are typed from these entries, and callers go through `callerOf<ConcertApi>`.
 */
import type { StepParams } from "../../sagas/participants.api";
import type { SaleState, SalesWindow, SeatStatus } from "./concert.domain";

export interface ScheduleView {
	id: string;
	startsAt: string;
	totalSeats: number;
	availableSeats: number;
}

export interface ConcertView {
	id: string;
	title: string;
	artist: string;
	venue: { id: string; name: string };
	sales: SalesWindow & { state: SaleState };
	schedules: ScheduleView[];
}

export interface SeatView {
	id: string;
	label: string;
	grade: string;
	price: number;
}

export interface SeatStatusView extends SeatView {
	status: SeatStatus;
}

export interface HoldView {
	concertId: string;
	scheduleId: string;
	owner: string;
	seats: SeatView[];
	amount: number;
	expiresAt: string;
	/** The show's start (a payment or a cancellation is judged against it). */
	startsAt: string;
}

export interface SaleStatus extends SalesWindow {
	concertId: string;
	state: SaleState;
	/** Seats neither sold nor held in the schedules still on sale. */
	availableSeats: number;
	heldSeats: number;
	soldOut: boolean;
}

export interface ConcertApi {
	"concert.get": { params: { id: string }; result: ConcertView };
	/** One schedule with its concert and live availability. */
	"concert.getSchedule": { params: { id: string }; result: ScheduleView & { concertId: string } };
	/** Where a concert's sale stands, for the waiting room. */
	"concert.saleStatus": { params: { id: string }; result: SaleStatus };
	/** Holds 1..4 seats for `owner` (a reservation id), all or nothing. */
	"concert.hold": { params: { scheduleId: string; seatIds: string[]; owner: string }; result: HoldView };
	/** Lets `owner`'s holds go (`abandon`: and refuses a late hold of the same owner); also a cancellation's step. */
	"concert.release": {
		params: StepParams<"concert.release">;
		result: { scheduleId: string; owner: string; released: number };
	};
}
