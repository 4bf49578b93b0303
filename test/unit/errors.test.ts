import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";
import { ConnectionAcquireTimeoutError, ConnectionRefusedError, DatabaseError, HostNotReachableError } from "sequelize";
import { DatabaseUnavailableError, FieldValidationError, isRetryable, isServerFault, NotFoundError, toHttpError } from "../../lib/errors";
import { dbFaultReason, describeDbError } from "../../lib/db";
import { EmailTakenError } from "../../services/user/errors";

describe("error mapping to HTTP bodies", () => {
	it("when a domain client error is thrown, then its status, type and data pass through", () => {
		const { status, body } = toHttpError(new NotFoundError("reservation", "r1"));
		expect(status).toBe(404);
		expect(body).toEqual({
			name: "NotFoundError",
			message: "reservation not found",
			code: 404,
			type: "NOT_FOUND",
			data: { resource: "reservation", id: "r1" }
		});
		expect(toHttpError(new EmailTakenError()).body.type).toBe("EMAIL_TAKEN");
	});

	it("when a client error crossed the transporter as a plain object, then it maps the same way", () => {
		const plain = { name: "EmailTakenError", message: "taken", code: 409, type: "EMAIL_TAKEN", data: undefined };
		expect(toHttpError(plain)).toEqual({ status: 409, body: { name: "EmailTakenError", message: "taken", code: 409, type: "EMAIL_TAKEN" } });
	});

	it("when the params schema fails, then 422 keeps field, rule and message but drops the submitted value", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ type: "stringMin", field: "password", message: "too short", actual: "hunter2" }
		]);
		const { status, body } = toHttpError(err);
		expect(status).toBe(422);
		expect(body.data).toEqual([{ field: "password", type: "stringMin", message: "too short" }]);
		expect(JSON.stringify(body)).not.toContain("hunter2");
		expect(toHttpError(new FieldValidationError([{ field: "seatIds", type: "array", message: "m" }])).status).toBe(422);
	});

	it("when body-parser rejects the body, then malformed JSON is 400 and an oversized one 413", () => {
		expect(toHttpError(Object.assign(new SyntaxError("Unexpected token"), { status: 400, type: "entity.parse.failed" }))).toMatchObject({
			status: 400,
			body: { type: "INVALID_JSON" }
		});
		expect(toHttpError(Object.assign(new Error("too large"), { status: 413, type: "entity.too.large" }))).toMatchObject({
			status: 413,
			body: { type: "PAYLOAD_TOO_LARGE" }
		});
	});

	it("when a server error carries SQL or a host, then the body is generic", () => {
		const err = Object.assign(new Error("ER_DUP_ENTRY: Duplicate entry for key at 10.0.0.5:3306"), { stack: "at x.js:1" });
		const { status, body } = toHttpError(err);
		expect(status).toBe(500);
		expect(body).toEqual({ name: "InternalServerError", message: "Internal server error", code: 500, type: "INTERNAL_ERROR" });
	});

	it("when a service is missing, times out or its circuit is open, then 503/504 with a stable type", () => {
		expect(toHttpError(new Errors.ServiceNotAvailableError({ action: "user.get", nodeID: "n1" })).body).toEqual({
			name: "ServiceUnavailableError",
			message: "Service temporarily unavailable",
			code: 503,
			type: "SERVICE_UNAVAILABLE"
		});
		expect(toHttpError(new Errors.RequestTimeoutError({ action: "user.get", nodeID: "n1" }))).toMatchObject({ status: 504, body: { type: "TIMEOUT" } });
		expect(toHttpError({ code: 503, type: "CIRCUIT_BREAKER_OPEN", message: "open" })).toMatchObject({ status: 503 });
	});

	it("when the gateway's rate limiter refuses (an error with a status but no type), then 429 RATE_LIMITED", () => {
		// The gateway throws it with no arguments (its typings want a type it never passes).
		expect(toHttpError(new ApiGateway.Errors.RateLimitExceeded(undefined as unknown as string))).toEqual({
			status: 429,
			body: { name: "RateLimitExceeded", message: "Too many requests", code: 429, type: "RATE_LIMITED" }
		});
	});

	it("when a client error has a type that is not UPPER_SNAKE, then it is not trusted as a stable type", () => {
		expect(toHttpError({ code: 400, type: "weird type", message: "x" }).status).toBe(500);
	});

	it("when errors are classified for retry and the circuit breaker, then flags decide, not classes", () => {
		expect(isRetryable({ retryable: true })).toBe(true);
		expect(isRetryable(new Errors.MoleculerClientError("x", 409, "X"))).toBe(false);
		expect(isRetryable(new Errors.RequestTimeoutError({ action: "a", nodeID: "n" }))).toBe(true);
		expect(isServerFault(new EmailTakenError())).toBe(false);
		expect(isServerFault(new Error("boom"))).toBe(true);
		expect(isServerFault(new Errors.RequestTimeoutError({ action: "a", nodeID: "n" }))).toBe(true);
	});

	/** What mysql2 throws, as Sequelize wraps it. */
	const driver = (code: string, errno: number | undefined, message: string) => Object.assign(new Error(message), { code, errno, sqlMessage: message });
	const UNAVAILABLE = { name: "ServiceUnavailableError", message: "Service temporarily unavailable", code: 503, type: "SERVICE_UNAVAILABLE" };

	it("when the database is down, unreachable, full or a lock wait times out, then 503 SERVICE_UNAVAILABLE, retryable, a server fault", () => {
		const faults: unknown[] = [
			new ConnectionRefusedError(driver("ECONNREFUSED", -111, "connect ECONNREFUSED 10.0.0.5:3306")),
			new HostNotReachableError(driver("EHOSTUNREACH", -113, "connect EHOSTUNREACH 10.0.0.5:3306")),
			new ConnectionAcquireTimeoutError(new Error("Operation timeout")),
			new DatabaseError(
				Object.assign(driver("PROTOCOL_CONNECTION_LOST", undefined, "Connection lost: The server closed the connection."), { sql: "SELECT 1" })
			),
			new DatabaseError(Object.assign(driver("ER_LOCK_WAIT_TIMEOUT", 1205, "Lock wait timeout exceeded"), { sql: "UPDATE seats SET x = 1" })),
			new DatabaseError(Object.assign(driver("ER_CON_COUNT_ERROR", 1040, "Too many connections"), { sql: "SELECT 1" })),
			driver("ETIMEDOUT", undefined, "connect ETIMEDOUT"),
			// As one crosses the transporter: the class is gone, the name and message stay.
			{ name: "SequelizeConnectionRefusedError", message: "connect ECONNREFUSED 10.0.0.5:3306", nodeID: "n1" },
			new DatabaseUnavailableError("connection refused")
		];
		for (const err of faults) {
			expect(toHttpError(err)).toEqual({ status: 503, body: UNAVAILABLE });
			expect(isRetryable(err)).toBe(true);
			expect(isServerFault(err)).toBe(true);
		}
	});

	it("when a database error is about the request (a duplicate key, bad SQL), then it stays a 500 and is not retried", () => {
		const dup = new DatabaseError(Object.assign(driver("ER_DUP_ENTRY", 1062, "Duplicate entry 'a' for key 'PRIMARY'"), { sql: "INSERT" }));
		expect(toHttpError(dup).status).toBe(500);
		expect(isRetryable(dup)).toBe(false);
	});

	it("when the reason a database is unavailable is put in words, then hosts and passwords stay out and a refused login names the user", () => {
		expect(dbFaultReason(new ConnectionRefusedError(driver("ECONNREFUSED", -111, "connect ECONNREFUSED 10.0.0.5:3306")))).toBe("connection refused");
		const denied = driver("ER_ACCESS_DENIED_ERROR", 1045, "Access denied for user 'crp'@'10.0.0.7' (using password: YES)");
		expect(dbFaultReason(denied)).toBe("access denied");
		expect(describeDbError(denied)).toBe("access denied for user 'crp'@'10.0.0.7' (using password: YES)");
		expect(describeDbError(new Error("getaddrinfo failed for mysql://crp:s3cret@db:3306\n    at x"))).toBe("getaddrinfo failed for mysql://***@db:3306");
		expect(dbFaultReason(new Error("something else"))).toBe("unavailable");
	});
});
