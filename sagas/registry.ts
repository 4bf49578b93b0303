/**
 * The saga definitions the saga service runs. Each booking saga (the reservations issue adds ConfirmReservation
 * and CancelReservation here) is a definition module beside this file, listed once below. A node only drives
 * sagas whose type it finds here; a saga of an unknown type is released for a node that knows it.
 */
import { cancelConfirmedReservation, cancelPendingReservation } from "./cancel-reservation.saga";
import { confirmReservation } from "./confirm-reservation.saga";
import type { SagaDefinition } from "./types";

export const SAGA_DEFINITIONS: SagaDefinition<unknown>[] = [
	confirmReservation as SagaDefinition<unknown>,
	cancelPendingReservation as SagaDefinition<unknown>,
	cancelConfirmedReservation as SagaDefinition<unknown>
];
