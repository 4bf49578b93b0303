/**
 * The REPL's operator commands against a running cluster: `npm run repl`'s script (scripts/repl.ts) is started as
 * its own process, joins this run's namespace over NATS, and is driven through its stdin like an operator would;
 * the printed rows are asserted. Plus the table formatter on its own.
 */
import { spawn, type ChildProcess } from "child_process";
import crypto from "crypto";
import path from "path";
import type { ServiceBroker } from "moleculer";
import { formatTable, replCommands } from "../../lib/repl-commands";
import type { SagaView } from "../../services/saga/saga.api";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { gatewayUrl, testEnv, waitFor, type TestEnv } from "../support/harness";
import { OPS_ADMIN } from "../support/ops";
import { SchemaNodes } from "../support/saga";
import FakeService from "../support/saga-services/fake/fake.service";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";
import { replCommand } from "../support/repl";
import { endProcess } from "../support/server-process";

const ROOT = path.resolve(__dirname, "../..");

describe("formatTable", () => {
	it("when rows have cells of different widths, then columns line up under a header and a rule", () => {
		const t = formatTable(
			[
				{ a: "x", bb: 12345 },
				{ a: "longer", bb: null }
			],
			["a", "bb"]
		);
		expect(t.split("\n")).toEqual(["a       bb", "------  -----", "x       12345", "longer  -"]);
	});
});

describe("REPL commands (cluster, REPL in its own process)", () => {
	let env: TestEnv;
	let nodes: SchemaNodes;
	let gateway: ServiceBroker;
	let repl: ChildProcess | undefined;
	let out = "";
	let concertId: string;
	let scheduleId: string;
	let soldLabels: string[];
	const failed: SagaView[] = [];
	let firstConsistency = "";

	const command = (line: string, until: RegExp, timeoutMs = 15_000) => replCommand(repl!, () => out, line, until, timeoutMs);

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		nodes = new SchemaNodes(env);
		const [g] = await Promise.all([
			env.broker(["api", "user", "queue", "concert", "ops"]),
			env.broker(["reservation", "payment", "ranking"]),
			nodes.node([testSagaSchema(), FakeService])
		]);
		gateway = g;
		await gateway.waitForServices(["reservation", "payment", "ranking", "saga", "fake"], 45_000);
		const api = gatewayUrl(gateway);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		({ concertId, scheduleId } = await ownConcert(api, admin, 1, 6, 500));
		const u = await shopper(api, concertId, 5000);
		const picked = (await seats(api, scheduleId)).slice(0, 2);
		soldLabels = picked.map(s => s.label);
		const held = await reserve(
			api,
			u,
			scheduleId,
			picked.map(s => s.id)
		);
		expect((await pay(api, u, held.body.id)).status).toBe(201);

		// Two sagas parked FAILED with a dead letter each: c rejects, undoing b keeps failing.
		for (let i = 0; i < 2; i++) {
			const saga = await gateway.call<SagaView, object>("saga.start", {
				type: "Test4",
				key: crypto.randomUUID(),
				data: { plan: { c: { fail: 1, error: "reject" }, "b:undo": { fail: -1 } } },
				waitMs: 15_000
			});
			expect(saga.status).toBe("FAILED");
			failed.push(saga);
		}

		repl = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/repl.ts"], {
			cwd: ROOT,
			env: { ...process.env, ...env.env, LOG_LEVEL: "warn", HOME: env.env.DATA_DIR },
			stdio: ["pipe", "pipe", "pipe"]
		});
		repl.stdout!.on("data", d => (out += d.toString()));
		repl.stderr!.on("data", d => (out += d.toString()));
		await waitFor(() => /crp \$/.test(out) || repl!.exitCode !== null, 45_000, "the REPL prompt");
		// The REPL node sees the cluster once the other nodes' INFO packets arrived.
		firstConsistency = await command("consistency", /consistency (ok|DRIFT) at/, 30_000);
	}, 150_000);

	afterAll(async () => {
		await endProcess(repl);
		await nodes.stop();
		await env.cleanup();
	}, 60_000);

	it("when `sagas list FAILED` and `sagas show <id>` are typed, then the FAILED sagas and the journal are printed as rows", async () => {
		const list = await command("sagas list FAILED", /saga\(s\) FAILED/);
		expect(list).toMatch(/id\s+type\s+status\s+step\s+updatedAt/);
		for (const s of failed) expect(list).toMatch(new RegExp(`${s.id}\\s+Test4\\s+FAILED\\s+b\\s`));

		const show = await command(`sagas show ${failed[0].id}`, /deadLetter\s+status/);
		expect(show).toMatch(new RegExp(`${failed[0].id}\\s+Test4\\s+\\S+\\s+FAILED\\s+b`));
		expect(show).toMatch(/step\s+phase\s+status\s+attempts/);
		expect(show).toMatch(/\bc\s+forward\s+REJECTED\b/i);
		expect(show).toMatch(/\bOPEN\s+b\s+compensate/i);
	});

	it("when `dlq`, `dlq resolve`, `dlq retry` and `sagas retry` are typed, then open dead letters are listed, one resolved, sagas retried", async () => {
		const list = await command("dlq", /dead letter\(s\) OPEN/);
		const ids = failed.map(s => new RegExp(`(\\S+)\\s+${s.id}\\s+Test4\\s+b\\s+compensate\\s+OPEN`, "i").exec(list)?.[1]);
		expect(ids.every(Boolean)).toBe(true);

		const resolved = await command(`dlq resolve ${ids[0]} refunded by hand`, /dead letter .* RESOLVED/);
		expect(resolved).toContain(`dead letter ${ids[0]} RESOLVED: refunded by hand`);

		const retried = await command(`dlq retry ${ids[1]}`, /dead letter .* RETRIED/);
		expect(retried).toMatch(new RegExp(`dead letter ${ids[1]} RETRIED: saga ${failed[1].id} \\w+`));

		const resumed = await command(`sagas retry ${failed[0].id}`, /resumed: \w+|error \w+/);
		expect(resumed).toMatch(new RegExp(`saga ${failed[0].id} resumed: (COMPENSATING|RUNNING|FAILED)`));

		const again = await command(`dlq resolve ${ids[0]}`, /error \w+/);
		expect(again).toMatch(/error DEAD_LETTER_CLOSED/);
		const unknown = await command("sagas retry no-such-saga", /error \w+/);
		expect(unknown).toMatch(/error NOT_FOUND/);
	});

	it("when `queue <concertId>` and `seats <scheduleId>` are typed, then the waiting room and the seat map are printed", async () => {
		const q = await command(`queue ${concertId}`, new RegExp(`${concertId}\\s+\\d+`));
		expect(q).toMatch(/concertId\s+waiting\s+active\s+maxActive\s+admittedPerMinute\s+admittedTotal/);
		expect(q).toMatch(new RegExp(`${concertId}\\s+0\\s+0\\s+100\\s+1\\s+1`));

		const s = await command(`seats ${scheduleId}`, /label\s+status/);
		expect(s).toMatch(/total\s+AVAILABLE\s+HELD\s+SOLD\s*\n-[- ]+\n6\s+4\s+0\s+2/);
		for (const label of soldLabels) expect(s).toMatch(new RegExp(`\\b${label}\\s+SOLD\\b`));
	});

	it("when `consistency` is typed, then one row per check, one per finding with its ids, and the verdict are printed", async () => {
		// Typed first (beforeAll) while both test sagas were parked: their open dead letters are the drift.
		const c = firstConsistency;
		for (const name of ["seats", "money", "holds", "outbox", "ranking"]) expect(c).toMatch(new RegExp(`\\n${name}\\s+ok\\s+0\\n`));
		expect(c).toMatch(/\nsagas\s+DRIFT\s+2\n/);
		expect(c).toMatch(/check\s+finding\s+ids/);
		for (const s of failed) expect(c).toMatch(new RegExp(`\\nsagas\\s+openDeadLetters\\s+.*"sagaId":"${s.id}"`));
		expect(c).toMatch(/consistency DRIFT at/);

		const now = await command("consistency", /consistency (ok|DRIFT) at/, 30_000);
		expect(now).toMatch(/\nseats\s+ok\s+0\n/);
	});

	it("when the commands run in-process with a broker, then they print the same rows (the programmatic API)", async () => {
		let printed = "";
		const cmds = replCommands({ write: s => void (printed += s) });
		await cmds.find(c => c.command.startsWith("queue"))!.action(gateway, { concertId });
		expect(printed).toMatch(new RegExp(`${concertId}\\s+0\\s+0\\s+100`));
	});
});
