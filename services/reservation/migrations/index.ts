import { createReservations } from "./001_create_reservations";
import { createSagaVoids } from "./002_saga_voids";
import { reservationsChangedIndex } from "./003_changed_since_index";
import { reservationRequestKey } from "./004_request_key";
import { createBuyerLimits } from "./005_buyer_limits";

/** The reservation database's migrations, in order (the service and the repository tests run the same list). */
export const RESERVATION_MIGRATIONS = [createReservations, createSagaVoids, reservationsChangedIndex, reservationRequestKey, createBuyerLimits];
