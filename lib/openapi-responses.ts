/**
 * The success answers of the OpenAPI document (issue 19: it had request schemas and `Error` only). One entry per
 * route of services/api/routes.ts: its status and the schema of its body, named components for the shapes several
 * routes share. docs/API.md says the same in words; test/integration/openapi.test.ts checks that every route has an
 * entry here and that real answers of a running gateway match their schema (ajv), so neither can drift.
 * Written by hand: the actions return plain objects without a declared result type the generator could read.
 */

type Schema = Record<string, unknown>;

const str = { type: "string" };
const int = { type: "integer" };
const time = { type: "string", format: "date-time" };
const nullable = (s: Schema): Schema => ({ ...s, nullable: true });
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const obj = (required: string[], properties: Record<string, Schema>): Schema => ({ type: "object", required, properties });
const list = (item: Schema): Schema => ({ type: "array", items: item });
const page = (item: Schema, extra: Record<string, Schema> = {}): Schema =>
	obj(["rows", "page", "pageSize", "total"], { rows: list(item), page: int, pageSize: int, total: int, ...extra });

/** Shapes several routes answer. */
export const RESPONSE_COMPONENTS: Record<string, Schema> = {
	User: obj(["id", "email", "name", "role"], { id: str, email: str, name: str, role: { type: "string", enum: ["user", "admin"] } }),
	Schedule: obj(["id", "startsAt", "totalSeats", "availableSeats"], { id: str, startsAt: time, totalSeats: int, availableSeats: int }),
	Sales: obj(["opensAt", "closesAt"], { opensAt: nullable(time), closesAt: nullable(time), state: { type: "string", enum: ["NOT_OPEN", "OPEN", "CLOSED"] } }),
	Concert: obj(["id", "title", "artist", "venue", "sales"], {
		id: str,
		title: str,
		artist: str,
		venue: obj(["name"], { id: str, name: str }),
		sales: ref("Sales"),
		schedules: list(ref("Schedule"))
	}),
	Seat: obj(["id", "label", "price", "status"], {
		id: str,
		label: str,
		grade: str,
		price: int,
		status: { type: "string", enum: ["AVAILABLE", "HELD", "SOLD"] }
	}),
	QueueToken: obj(["token", "concertId", "status"], {
		token: str,
		concertId: str,
		status: { type: "string", enum: ["PRE_QUEUE", "WAITING", "ACTIVE", "EXPIRED", "LEFT", "COMPLETED", "SOLD_OUT", "CLOSED"] },
		position: int,
		etaSeconds: { type: "number" },
		expiresAt: nullable(time),
		opensAt: nullable(time)
	}),
	Reservation: obj(["id", "status", "concertId", "scheduleId", "seats", "amount"], {
		id: str,
		status: { type: "string", enum: ["PENDING", "PAYING", "CONFIRMED", "CANCELLED", "EXPIRED"] },
		concertId: str,
		scheduleId: str,
		seats: list(obj(["id", "label", "price"], { id: str, label: str, price: int })),
		amount: int,
		expiresAt: nullable(time),
		payment: nullable(obj(["id", "amount", "status"], { id: str, amount: int, status: str })),
		saga: nullable(obj(["id", "status"], { id: str, status: str }))
	}),
	Payment: obj(["id", "reservationId", "amount", "status"], {
		id: str,
		reservationId: nullable(str),
		amount: int,
		status: { type: "string", enum: ["COMPLETED", "REFUNDED"] }
	}),
	Transaction: obj(["id", "type", "amount", "balanceAfter", "createdAt"], {
		id: str,
		type: { type: "string", enum: ["CHARGE", "PAYMENT", "REFUND"] },
		amount: int,
		balanceAfter: int,
		createdAt: time
	}),
	Review: obj(["id", "concertId", "userId", "rating", "content", "createdAt"], {
		id: str,
		concertId: str,
		userId: str,
		rating: int,
		content: str,
		createdAt: time
	}),
	Notification: obj(["id", "type", "message", "createdAt", "readAt"], { id: str, type: str, message: str, createdAt: time, readAt: nullable(time) }),
	Saga: obj(["id", "type", "status", "createdAt", "updatedAt"], {
		id: str,
		type: str,
		status: { type: "string", enum: ["RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED"] },
		step: { description: "The current step: its name in lists, its index with the journal" },
		createdAt: { oneOf: [time, int] },
		updatedAt: { oneOf: [time, int] }
	}),
	DeadLetter: obj(["id", "sagaId", "status"], {
		id: str,
		sagaId: str,
		sagaType: str,
		step: str,
		phase: str,
		status: { type: "string", enum: ["OPEN", "RETRIED", "RESOLVED"] },
		note: nullable(str)
	}),
	ConsistencyReport: obj(["ok", "checks"], {
		ok: { type: "boolean" },
		checks: list(
			obj(["name", "ok", "details"], {
				name: str,
				ok: { type: "boolean" },
				status: { type: "string", enum: ["ok", "drift", "unavailable"] },
				details: { type: "object" }
			})
		)
	})
};

const accepted = obj([], {});
const anyObject = { type: "object" };

/** `METHOD /path` (as in routes.ts) -> the success status and its body. */
export const ROUTE_RESPONSES: Record<string, { status: number; schema?: Schema; description?: string }> = {
	"GET /health": {
		status: 200,
		schema: obj(["status", "checks"], { status: str, checks: anyObject }),
		description: "503 with the same body when a dependency is down"
	},
	"GET /openapi.json": { status: 200, schema: anyObject },
	"GET /docs": { status: 200, description: "An HTML page" },
	"GET /docs/:file": { status: 200, description: "The page's script or stylesheet" },

	"POST /auth/register": { status: 201, schema: ref("User") },
	"POST /auth/login": {
		status: 200,
		schema: obj(["accessToken", "tokenType", "expiresIn", "user"], { accessToken: str, tokenType: str, expiresIn: int, user: ref("User") })
	},
	"GET /users/me": { status: 200, schema: ref("User") },

	"POST /queue/tokens": { status: 201, schema: ref("QueueToken"), description: "200 when the user already holds a token" },
	"GET /queue/tokens/:token": { status: 200, schema: ref("QueueToken") },
	"DELETE /queue/tokens/:token": { status: 204 },
	"GET /admin/queues/:concertId": {
		status: 200,
		schema: obj(["state", "waiting", "active", "maxActive", "admittedPerMinute", "admittedTotal"], {
			concertId: str,
			state: { type: "string", enum: ["OPEN", "SOLD_OUT", "CLOSED"] },
			waiting: int,
			active: int,
			maxActive: int,
			admittedPerMinute: int,
			admittedTotal: int
		})
	},

	"GET /concerts": { status: 200, schema: page(ref("Concert")) },
	"GET /concerts/:id": { status: 200, schema: ref("Concert") },
	"GET /concerts/:id/schedules": { status: 200, schema: list(ref("Schedule")) },
	"GET /schedules/:id/seats": { status: 200, schema: list(ref("Seat")) },
	"POST /admin/concerts": { status: 201, schema: ref("Concert") },
	"PUT /admin/concerts/:id/sales": { status: 200, schema: ref("Concert") },

	"POST /reservations": { status: 201, schema: ref("Reservation") },
	"GET /reservations": { status: 200, schema: page(ref("Reservation")) },
	"GET /reservations/:id": { status: 200, schema: ref("Reservation") },
	"POST /reservations/:id/cancel": {
		status: 200,
		schema: obj(["id", "status"], { id: str, status: { type: "string", enum: ["CANCELLED"] }, refund: nullable(obj(["amount"], { amount: int })) })
	},
	"POST /payments": {
		status: 201,
		schema: obj(["id", "reservationId", "amount", "status"], {
			id: str,
			reservationId: str,
			amount: int,
			status: { type: "string", enum: ["COMPLETED"] },
			reservation: obj(["id", "status"], { id: str, status: str })
		}),
		description: "202 {sagaId, status: RUNNING} when the saga outlives the wait"
	},

	"GET /points": { status: 200, schema: obj(["userId", "balance"], { userId: str, balance: int }) },
	"POST /points/charge": { status: 200, schema: obj(["userId", "balance", "transactionId"], { userId: str, balance: int, transactionId: str }) },
	"GET /points/transactions": { status: 200, schema: page(ref("Transaction")) },
	"GET /payments": { status: 200, schema: page(ref("Payment")) },
	"GET /payments/:id": { status: 200, schema: ref("Payment") },

	"GET /admin/sagas": { status: 200, schema: page(ref("Saga")) },
	"GET /admin/sagas/:id": { status: 200, schema: ref("Saga"), description: "The saga with its step journal (`steps`)" },
	"POST /admin/sagas/:id/retry": { status: 202, schema: accepted },
	"GET /admin/dead-letters": { status: 200, schema: page(ref("DeadLetter")) },
	"POST /admin/dead-letters/:id/retry": { status: 202, schema: accepted },
	"POST /admin/dead-letters/:id/resolve": { status: 200, schema: ref("DeadLetter") },

	"GET /admin/consistency": { status: 200, schema: ref("ConsistencyReport") },
	"POST /admin/consistency/repair": {
		status: 200,
		schema: obj(["check", "repaired", "ok"], { check: str, repaired: anyObject, ok: { type: "boolean" }, details: anyObject })
	},
	"POST /admin/retention/run": {
		status: 200,
		schema: obj(["deleted", "failed", "concertsForgotten", "tookMs"], { deleted: anyObject, failed: anyObject, concertsForgotten: int, tookMs: int })
	},

	"GET /rankings/concerts": {
		status: 200,
		schema: list(obj(["rank", "concertId", "score"], { rank: int, concertId: str, title: nullable(str), score: int }))
	},
	"POST /admin/rankings/rebuild": { status: 200, schema: anyObject },
	"POST /concerts/:id/reviews": { status: 201, schema: ref("Review") },
	"GET /concerts/:id/reviews": { status: 200, schema: page(ref("Review"), { averageRating: nullable({ type: "number" }) }) },
	"GET /notifications": { status: 200, schema: page(ref("Notification")) },
	"POST /notifications/read-all": { status: 200, schema: obj(["marked"], { marked: int }) },
	"POST /notifications/:id/read": { status: 200, schema: ref("Notification") },
	"GET /admin/alerts": { status: 200, schema: page(ref("Notification")) },

	"GET /admin/event-dead-letters": { status: 200, schema: list(obj(["id", "group"], { id: str, group: str, event: anyObject, error: {} })) },
	"POST /admin/event-dead-letters/:id/replay": { status: 202, schema: anyObject },
	"POST /admin/event-dead-letters/replay": {
		status: 202,
		schema: obj(["eventType", "replayed", "ids"], { eventType: str, group: nullable(str), replayed: int, ids: list(str) })
	},

	"GET /admin/nodes": {
		status: 200,
		schema: obj(["nodes", "available", "total"], {
			nodes: list(obj(["id", "available", "services"], { id: str, available: { type: "boolean" }, hostname: nullable(str), services: list(str) })),
			available: int,
			total: int
		})
	},
	"GET /admin/figures": {
		status: 200,
		schema: obj(["at", "windowSec", "sagas", "outbox", "deadLetters", "unavailable"], {
			at: time,
			windowSec: int,
			sagas: nullable(anyObject),
			outbox: {},
			deadLetters: obj(["sagas", "events"], { sagas: nullable(int), events: nullable(int) }),
			unavailable: list(str)
		})
	}
};
