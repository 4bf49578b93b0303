/**
 * HTTP steps of the booking journey for tests: a user with points and an ACTIVE waiting-room token, seats to
 * hold, and the reads that show the end state (balance, seat statuses, reservation).
 */
import { http } from "./harness";

export interface Shopper {
	token: string;
	userId: string;
	queueToken: string;
	concertId: string;
}

let counter = 0;

export async function shopper(api: string, concertId: string, points: number, tag = "u"): Promise<Shopper> {
	const email = `${tag}${++counter}-${Date.now().toString(36)}@example.com`;
	const reg = await http("POST", `${api}/auth/register`, { body: { email, password: "password-1", name: tag } });
	if (reg.status !== 201) throw new Error(`register: ${reg.status} ${JSON.stringify(reg.body)}`);
	const login = await http("POST", `${api}/auth/login`, { body: { email, password: "password-1" } });
	const token = login.body.accessToken as string;
	if (points > 0) {
		const c = await http("POST", `${api}/points/charge`, { token, body: { amount: points }, headers: { "idempotency-key": `charge-${email}` } });
		if (c.status !== 200) throw new Error(`charge: ${c.status} ${JSON.stringify(c.body)}`);
	}
	const q = await http("POST", `${api}/queue/tokens`, { token, body: { concertId } });
	if (q.body.status !== "ACTIVE") throw new Error(`queue: ${q.status} ${JSON.stringify(q.body)}`);
	return { token, userId: reg.body.id, queueToken: q.body.token, concertId };
}

/** The first concert of the demo catalog and its first schedule. */
export async function demoSchedule(api: string): Promise<{ concertId: string; scheduleId: string }> {
	const list = await http("GET", `${api}/concerts?pageSize=1`);
	const concertId = list.body.rows[0].id as string;
	const detail = await http("GET", `${api}/concerts/${concertId}`);
	return { concertId, scheduleId: detail.body.schedules[0].id };
}

/**
 * A new concert of its own (admin route), so a test's seats are not shared with another test. Its show is in 30
 * days unless `opts.startsAt` says otherwise; `opts.sales` sets its sale window.
 */
export async function ownConcert(
	api: string,
	adminToken: string,
	rows = 2,
	perRow = 10,
	price = 1000,
	opts: { startsAt?: Date; sales?: { opensAt?: string | null; closesAt?: string | null } } = {}
): Promise<{ concertId: string; scheduleId: string }> {
	const res = await http("POST", `${api}/admin/concerts`, {
		token: adminToken,
		body: {
			title: `Test ${Date.now().toString(36)}-${++counter}`,
			artist: "Test Artist",
			venue: { name: `Venue ${Date.now().toString(36)}-${counter}` },
			schedules: [{ startsAt: (opts.startsAt ?? new Date(Date.now() + 30 * 86400_000)).toISOString() }],
			seats: { rows, perRow, price },
			...(opts.sales ? { sales: opts.sales } : {})
		}
	});
	if (res.status !== 201) throw new Error(`create concert: ${res.status} ${JSON.stringify(res.body)}`);
	return { concertId: res.body.id, scheduleId: res.body.schedules[0].id };
}

export async function seats(api: string, scheduleId: string): Promise<{ id: string; label: string; price: number; status: string }[]> {
	return (await http("GET", `${api}/schedules/${scheduleId}/seats`)).body;
}

export async function balance(api: string, s: Shopper): Promise<number> {
	return (await http("GET", `${api}/points`, { token: s.token })).body.balance;
}

export async function reserve(api: string, s: Shopper, scheduleId: string, seatIds: string[]) {
	return http("POST", `${api}/reservations`, { token: s.token, body: { scheduleId, seatIds }, headers: { "x-queue-token": s.queueToken } });
}

export async function pay(api: string, s: Shopper, reservationId: string, key = `pay-${reservationId}`) {
	return http("POST", `${api}/payments`, {
		token: s.token,
		body: { reservationId },
		headers: { "x-queue-token": s.queueToken, "idempotency-key": key }
	});
}

export async function reservation(api: string, s: Shopper, id: string) {
	return (await http("GET", `${api}/reservations/${id}`, { token: s.token })).body;
}

export async function adminToken(api: string, email: string, password: string): Promise<string> {
	return (await http("POST", `${api}/auth/login`, { body: { email, password } })).body.accessToken;
}
