/**
 * Operator commands for the REPL (scripts/repl.ts joins the cluster; `npm run dev` runs them in-process), in
 * moleculer-repl's `customCommands` shape. Each one calls the same admin action the HTTP routes call, so the REPL
 * and /api/admin/* never disagree, and prints readable tables:
 *
 *   mol $ sagas                          newest sagas          mol $ dlq                       open dead letters
 *   mol $ sagas list FAILED              by status             mol $ dlq list RESOLVED         by status
 *   mol $ sagas show <id>                one, with its journal mol $ dlq retry <id>            retry its saga
 *   mol $ sagas retry <id>               resume a FAILED saga  mol $ dlq resolve <id> [note]   settled by hand
 *   mol $ queue <concertId>              waiting room stats    mol $ seats <scheduleId>        seat map counts and rows
 *   mol $ consistency                    the consistency check, one row per check and one per finding
 *   mol $ consistency incremental        only what changed since the last scheduled run
 *
 * A REPL node sees only the nodes of its own NAMESPACE, on its own TRANSPORTER, that accept its CLUSTER_SECRET.
 * Started with another namespace it ran alone, and every command answered SERVICE_NOT_FOUND with nothing to say
 * why; `warnIfAlone` and `ReplHintsMiddleware` (scripts/repl.ts) say so, with the namespace and transporter used.
 */
import type { Middleware, ReplOptions, ServiceBroker } from "moleculer";

export interface ReplArgs {
	action?: string;
	arg?: string;
	concertId?: string;
	scheduleId?: string;
	note?: string[] | string;
	/** `consistency [scope]`: "incremental" reads only what changed since the last scheduled run. */
	scope?: string;
	/** The whole line as typed, after the command name's position (set by moleculer-repl). */
	rawCommand?: string;
	options?: Record<string, unknown>;
}

export interface ReplCommand {
	command: string;
	description: string;
	alias?: string[];
	action(broker: Pick<ServiceBroker, "call">, args: ReplArgs): Promise<void>;
}

type Cell = string | number | boolean | null | undefined;

/** A plain-text table: a header, a rule, and one padded row per record. */
export function formatTable(rows: Record<string, Cell>[], columns: string[]): string {
	const text = (v: Cell) => (v === null || v === undefined ? "-" : String(v));
	const widths = columns.map(c => Math.max(c.length, ...rows.map(r => text(r[c]).length)));
	const line = (cells: string[]) =>
		cells
			.map((c, i) => c.padEnd(widths[i]))
			.join("  ")
			.trimEnd();
	return [line(columns), line(widths.map(w => "-".repeat(w))), ...rows.map(r => line(columns.map(c => text(r[c]))))].join("\n");
}

const short = (v: unknown, max = 60) => {
	const s = typeof v === "string" ? v : JSON.stringify(v);
	return s === undefined ? undefined : s.length > max ? `${s.slice(0, max - 1)}…` : s;
};

interface Out {
	write(s: string): void;
}

/** The saga's status once it is terminal, polled for up to `waitMs`; undefined if it is still active by then. */
async function settled(broker: Pick<ServiceBroker, "call">, id: string, waitMs: number): Promise<string | undefined> {
	const until = Date.now() + waitMs;
	for (;;) {
		const { status } = await broker.call<{ status: string }, object>("saga.find", { id });
		if (status === "COMPLETED" || status === "COMPENSATED" || status === "FAILED") return status;
		if (Date.now() >= until) return undefined;
		await new Promise(r => setTimeout(r, 200));
	}
}

/** The commands, printing to `out` (stdout by default; a test passes its own). */
export function replCommands(out: Out = process.stdout): ReplCommand[] {
	const print = (s: string) => out.write(`${s}\n`);
	/** Runs the call and prints it, or the error's type and message (never a stack). */
	const run = async (fn: () => Promise<void>) => {
		try {
			await fn();
		} catch (err) {
			const e = err as { type?: string; message?: string; data?: unknown };
			print(`error ${e.type ?? "ERROR"}: ${e.message ?? String(err)}${e.data ? ` ${short(e.data, 200)}` : ""}`);
		}
	};
	const usage = (s: string) => print(`usage: ${s}`);

	return [
		{
			command: "sagas [action] [arg]",
			description: "Sagas: `sagas [list] [STATUS]`, `sagas show <id>`, `sagas retry <id>` (resume a FAILED saga)",
			action: (broker, args) =>
				run(async () => {
					const action = (args.action ?? "list").toLowerCase();
					if (action === "list" || /^[A-Z]+$/.test(args.action ?? "")) {
						const status = action === "list" ? args.arg?.toUpperCase() : args.action;
						const page = await broker.call<{ rows: Record<string, Cell>[]; total: number }, object>(
							"saga.list",
							status ? { status, pageSize: 50 } : { pageSize: 50 }
						);
						print(formatTable(page.rows, ["id", "type", "status", "step", "updatedAt"]));
						print(`${page.rows.length} of ${page.total} saga(s)${status ? ` ${status}` : ""}`);
					} else if (action === "show") {
						if (!args.arg) return usage("sagas show <sagaId>");
						const s = await broker.call<
							Record<string, unknown> & { journal: Record<string, unknown>[]; deadLetters: Record<string, unknown>[] },
							object
						>("saga.get", { id: args.arg });
						print(
							formatTable(
								[
									{
										id: s.id as string,
										type: s.type as string,
										key: s.key as string,
										status: s.status as string,
										step: s.stepName as string,
										attempts: s.attempts as number
									}
								],
								["id", "type", "key", "status", "step", "attempts"]
							)
						);
						if (s.error) print(`error: ${short(s.error, 300)}`);
						print(
							formatTable(
								s.journal.map(j => ({
									step: j.step as string,
									phase: j.phase as string,
									status: j.status as string,
									attempts: j.attempts as number,
									startedAt: j.startedAt as string,
									error: short(j.error)
								})),
								["step", "phase", "status", "attempts", "startedAt", "error"]
							)
						);
						if (s.deadLetters.length > 0)
							print(
								formatTable(
									s.deadLetters.map(d => ({
										deadLetter: d.id as string,
										status: d.status as string,
										step: d.step as string,
										phase: d.phase as string
									})),
									["deadLetter", "status", "step", "phase"]
								)
							);
					} else if (action === "retry") {
						if (!args.arg) return usage("sagas retry <sagaId>");
						const s = await broker.call<{ id: string; status: string }, object>("saga.retry", { id: args.arg });
						print(`saga ${s.id} resumed: ${s.status}`);
						// Where it ended, when that is quick: COMPLETED or COMPENSATED settled its reservation; FAILED again
						// means the cause is still there.
						const end = await settled(broker, s.id, 5000);
						if (end) print(`saga ${s.id} ${end}${end === "FAILED" ? ": failed again (sagas show " + s.id + ")" : ""}`);
						else print(`saga ${s.id} still running; sagas show ${s.id} follows it`);
					} else usage("sagas [list [STATUS] | show <id> | retry <id>]");
				})
		},
		{
			command: "dlq [action] [arg] [note...]",
			description: "Saga dead letters: `dlq [list] [OPEN|RETRIED|RESOLVED]`, `dlq retry <id>`, `dlq resolve <id> [note]`",
			action: (broker, args) =>
				run(async () => {
					const action = (args.action ?? "list").toLowerCase();
					if (action === "list") {
						const status = (args.arg ?? "OPEN").toUpperCase();
						const page = await broker.call<{ rows: Record<string, unknown>[]; total: number }, object>("saga.deadLetters", {
							status,
							pageSize: 100
						});
						print(
							formatTable(
								page.rows.map(d => ({
									id: d.id as string,
									sagaId: d.sagaId as string,
									sagaType: d.sagaType as string,
									step: d.step as string,
									phase: d.phase as string,
									status: d.status as string,
									error: short(d.error, 40),
									createdAt: d.createdAt as string
								})),
								["id", "sagaId", "sagaType", "step", "phase", "status", "error", "createdAt"]
							)
						);
						print(`${page.rows.length} of ${page.total} dead letter(s) ${status}`);
					} else if (action === "retry") {
						if (!args.arg) return usage("dlq retry <deadLetterId>");
						const r = await broker.call<{ id: string; status: string; saga: { id: string; status: string } }, object>("saga.retryDeadLetter", {
							id: args.arg
						});
						print(`dead letter ${r.id} ${r.status}: saga ${r.saga.id} ${r.saga.status}`);
					} else if (action === "resolve") {
						if (!args.arg) return usage("dlq resolve <deadLetterId> [note...]");
						// moleculer-repl gives a variadic argument only its first word: the note is the raw line's rest.
						const words = args.rawCommand?.trim().split(/\s+/).slice(3) ?? (Array.isArray(args.note) ? args.note : args.note ? [args.note] : []);
						const note = words.join(" ");
						const d = await broker.call<{ id: string; status: string; note: string | null }, object>(
							"saga.resolveDeadLetter",
							note ? { id: args.arg, note } : { id: args.arg }
						);
						print(`dead letter ${d.id} ${d.status}${d.note ? `: ${d.note}` : ""}`);
					} else usage("dlq [list [STATUS] | retry <id> | resolve <id> [note...]]");
				})
		},
		{
			command: "queue <concertId>",
			description: "Waiting room of a concert: waiting, active, cap, admissions",
			action: (broker, args) =>
				run(async () => {
					const s = await broker.call<Record<string, Cell>, object>("queue.stats", { concertId: args.concertId });
					print(formatTable([s], ["concertId", "waiting", "active", "maxActive", "admittedPerMinute", "admittedTotal"]));
				})
		},
		{
			command: "seats <scheduleId>",
			description: "Seat map of a schedule: counts by status, then every seat that is not AVAILABLE",
			action: (broker, args) =>
				run(async () => {
					const seats = await broker.call<{ id: string; label: string; grade: string; price: number; status: string }[], object>("concert.seats", {
						id: args.scheduleId
					});
					const count = (st: string) => seats.filter(s => s.status === st).length;
					print(
						formatTable(
							[{ total: seats.length, AVAILABLE: count("AVAILABLE"), HELD: count("HELD"), SOLD: count("SOLD") }],
							["total", "AVAILABLE", "HELD", "SOLD"]
						)
					);
					const taken = seats.filter(s => s.status !== "AVAILABLE");
					if (taken.length > 0) print(formatTable(taken, ["label", "status", "grade", "price", "id"]));
				})
		},
		{
			command: "consistency [scope]",
			description:
				"Run the consistency check now (full; `consistency incremental`: what changed since the last scheduled run): one row per check, then one per finding with its ids",
			action: (broker, args) =>
				run(async () => {
					const r = await broker.call<
						{
							ok: boolean;
							status?: string;
							checkedAt: string;
							scope?: { full: boolean; since: string | null };
							checks: { name: string; ok: boolean; status?: string; details: Record<string, unknown> }[];
						},
						object
					>("ops.consistency", { full: args.scope !== "incremental" });
					// A check that could not read a source is UNAVAILABLE: it claims neither ok nor drift.
					const verdict = (status: string | undefined, ok: boolean) => (ok ? "ok" : status === "unavailable" ? "UNAVAILABLE" : "DRIFT");
					const findings = r.checks.flatMap(c =>
						Object.entries(c.details).flatMap(([kind, v]) =>
							Array.isArray(v) ? v.map(item => ({ check: c.name, finding: kind, ids: short(item, 110) })) : []
						)
					);
					print(
						formatTable(
							r.checks.map(c => ({ check: c.name, ok: verdict(c.status, c.ok), findings: findings.filter(f => f.check === c.name).length })),
							["check", "ok", "findings"]
						)
					);
					if (findings.length > 0) print(formatTable(findings, ["check", "finding", "ids"]));
					const unread = r.checks.filter(c => c.status === "unavailable").map(c => `${c.name}: ${short(c.details, 110)}`);
					if (unread.length > 0) print(unread.join("\n"));
					const scope = r.scope === undefined || r.scope.full ? "full" : `changed since ${r.scope.since}`;
					print(`consistency ${verdict(r.status, r.ok)} at ${r.checkedAt} (${scope})`);
				})
		}
	];
}

export const REPL_COMMANDS: ReplCommand[] = replCommands();

/**
 * The broker option `replOptions` (moleculer.config.ts): moleculer-repl hands an action its parsed arguments as
 * an object (`{action, arg, options, ...}`) although moleculer's typings say `string[]`, hence the conversion.
 */
export function replOptions(commands: ReplCommand[] = REPL_COMMANDS): ReplOptions {
	return {
		delimiter: "crp $",
		customCommands: commands.map(c => ({
			command: c.command,
			description: c.description,
			action: (broker: ServiceBroker, args: unknown) => c.action(broker, args as ReplArgs)
		}))
	};
}

/** Where a REPL node looked for the cluster: its NAMESPACE and its transporter (redacted URL). */
export interface ReplReach {
	namespace: string;
	transporter: string | undefined;
}

/** The other nodes this broker sees (available ones), by id. */
export function otherNodes(broker: Pick<ServiceBroker, "registry">): string[] {
	return broker.registry.nodes
		.list({ onlyAvailable: true, withServices: false })
		.filter(n => !n.local)
		.map(n => n.id);
}

const describeReach = (reach: ReplReach) =>
	`namespace ${reach.namespace ? `"${reach.namespace}"` : '"" (none set)'} on ${reach.transporter ?? "in-process transport (no TRANSPORTER)"}`;

const ALONE_HINT =
	"Start the REPL with the cluster's NAMESPACE (and its TRANSPORTER and CLUSTER_SECRET: a node with another secret is not heard either), " +
	"e.g. NAMESPACE=<the cluster's> npm run repl. `nodes` lists the nodes this REPL sees.";

/**
 * Waits up to `waitMs` for another node to show up (nodes answer a new node's discovery within a moment); prints a
 * warning if none did. Answers whether the REPL is alone.
 */
export async function warnIfAlone(broker: Pick<ServiceBroker, "registry">, reach: ReplReach, opts: { waitMs?: number; out?: Out } = {}): Promise<boolean> {
	const waitMs = opts.waitMs ?? 3000;
	const until = Date.now() + waitMs;
	while (otherNodes(broker).length === 0 && Date.now() < until) await new Promise(r => setTimeout(r, 100));
	if (otherNodes(broker).length > 0) return false;
	(opts.out ?? process.stdout).write(
		`WARNING: no other node in ${describeReach(reach)} after ${Math.round(waitMs / 1000)} s: this REPL is alone, and every call will answer SERVICE_NOT_FOUND.\n` +
			`${ALONE_HINT}\n`
	);
	return true;
}

/**
 * For the REPL node: a call that fails with SERVICE_NOT_FOUND (the built-in `call` and our commands alike) also
 * prints why: no other node seen at all (the wrong NAMESPACE, TRANSPORTER or CLUSTER_SECRET), or nodes that do not
 * offer the action.
 */
export function ReplHintsMiddleware(reach: ReplReach, out: Out = process.stdout): Middleware {
	let broker: ServiceBroker;
	return {
		name: "ReplHints",
		created(b: ServiceBroker) {
			broker = b;
		},
		call(next: (...args: unknown[]) => Promise<unknown>) {
			return (actionName: unknown, ...rest: unknown[]) =>
				next(actionName, ...rest).catch((err: { type?: string }) => {
					if (err?.type === "SERVICE_NOT_FOUND") {
						const others = otherNodes(broker);
						out.write(
							others.length === 0
								? `hint: SERVICE_NOT_FOUND because this REPL sees no other node in ${describeReach(reach)}. ${ALONE_HINT}\n`
								: `hint: SERVICE_NOT_FOUND: none of the ${others.length} other node(s) in ${describeReach(reach)} offers ${String(actionName)}; \`services\` lists what runs.\n`
						);
					}
					throw err;
				});
		}
		// moleculer's typings give the `call` hook the return type of `call` itself, not of a wrapper.
	} as unknown as Middleware;
}
