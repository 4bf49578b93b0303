/**
 * Every HTTP route of docs/API.md, in one table: `METHOD /path` under /api -> the published action behind it.
 * Nothing else is reachable over HTTP (the gateway uses mappingPolicy "restrict") but the few pages of PAGES below.
 * Each bounded context keeps its own block; /api/health belongs to the gateway itself.
 */
export const ROUTES: Record<string, string> = {
	// Gateway
	"GET /health": "api.health",
	"GET /openapi.json": "api.openapi",
	"GET /docs": "api.docs",
	"GET /docs/:file": "api.docsAsset",
	"GET /admin/nodes": "api.nodes",

	// Users
	"POST /auth/register": "user.register",
	"POST /auth/login": "user.login",
	"GET /users/me": "user.me",

	// Waiting room (queue)
	"POST /queue/tokens": "queue.enter",
	"GET /queue/tokens/:token": "queue.status",
	"DELETE /queue/tokens/:token": "queue.leave",
	"GET /admin/queues/:concertId": "queue.stats",

	// Catalog (concert)
	"GET /concerts": "concert.list",
	"GET /concerts/:id": "concert.get",
	"GET /concerts/:id/schedules": "concert.schedules",
	"GET /schedules/:id/seats": "concert.seats",
	"POST /admin/concerts": "concert.create",
	"PUT /admin/concerts/:id/sales": "concert.setSales",

	// Reservations and payments (reservation); the payment itself is the ConfirmReservation saga
	"POST /reservations": "reservation.create",
	"GET /reservations": "reservation.list",
	"GET /reservations/:id": "reservation.get",
	"POST /reservations/:id/cancel": "reservation.cancel",
	"POST /payments": "reservation.pay",

	// Points and payments (payment); POST /payments belongs to reservations
	"GET /points": "payment.balance",
	"POST /points/charge": "payment.charge",
	"GET /points/transactions": "payment.transactions",
	"GET /payments": "payment.list",
	"GET /payments/:id": "payment.get",

	// Operations: sagas and dead letters (saga)
	"GET /admin/sagas": "saga.list",
	"GET /admin/sagas/:id": "saga.get",
	"POST /admin/sagas/:id/retry": "saga.retry",
	"GET /admin/dead-letters": "saga.deadLetters",
	"POST /admin/dead-letters/:id/retry": "saga.retryDeadLetter",
	"POST /admin/dead-letters/:id/resolve": "saga.resolveDeadLetter",

	// Operations: consistency check across contexts (ops)
	"GET /admin/consistency": "ops.consistency",
	"POST /admin/consistency/repair": "ops.repair",
	"POST /admin/retention/run": "ops.retention",
	"GET /admin/figures": "ops.figures",

	// Ranking, reviews, notifications (ranking, review, notification)
	"GET /rankings/concerts": "ranking.concerts",
	"POST /admin/rankings/rebuild": "ranking.rebuild",
	"POST /concerts/:id/reviews": "review.create",
	"GET /concerts/:id/reviews": "review.list",
	"GET /notifications": "notification.list",
	"POST /notifications/read-all": "notification.markAllRead",
	"POST /notifications/:id/read": "notification.markRead",
	"GET /admin/alerts": "notification.alerts",

	// Operations: event dead letters (notification); /admin/dead-letters* are the saga service's
	"GET /admin/event-dead-letters": "notification.eventDeadLetters",
	"POST /admin/event-dead-letters/:id/replay": "notification.replayEventDeadLetter",
	"POST /admin/event-dead-letters/replay": "notification.replayEventDeadLetters"
};

/**
 * The gateway's pages outside /api (no bearer token: each page is public HTML that signs in through
 * POST /api/auth/login and then uses the API above). `GET /` is the fans' booking page (services/api/app/, issue
 * 20) with its files under /app/; `GET /admin` the operator console (services/api/console/, issue 19).
 */
export const PAGES: Record<string, string> = {
	"GET /": "api.app",
	"GET /app/:file": "api.appAsset",
	"GET /admin": "api.console",
	"GET /admin/:file": "api.consoleAsset"
};

/**
 * Services the API cannot serve without; /api/health reports each one's database through its `health` action
 * and answers 503 when one is missing or its database is down.
 */
export const REQUIRED_SERVICES: string[] = ["user", "queue", "concert", "payment", "saga", "reservation"];

/** Routes that need an ACTIVE waiting-room token in `X-Queue-Token` (checked by the services; listed for the docs). */
export const QUEUE_GATED: string[] = ["POST /reservations", "POST /payments"];

/** Routes where `Idempotency-Key` is mandatory (400 IDEMPOTENCY_KEY_REQUIRED without it). */
export const IDEMPOTENCY_REQUIRED: string[] = ["POST /payments", "POST /points/charge"];

/** State-changing routes left out of the idempotency layer: replaying a login would hand out a stored token. */
export const IDEMPOTENCY_EXEMPT: string[] = ["POST /auth/login"];
