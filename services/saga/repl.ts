/**
 * Operator commands for the REPL node (scripts/repl.ts): `broker.repl()` reads them from the broker option
 * `replOptions: { customCommands: sagaReplCommands }`. Each one calls the saga service's admin action, so the
 * REPL and the admin HTTP routes do exactly the same thing.
 *
 *   mol $ sagas FAILED             list sagas (optionally by status)
 *   mol $ saga <id>                one saga with its journal and dead letters
 *   mol $ saga-retry <id>          resume a FAILED saga
 *   mol $ dead-letters             open dead letters
 *   mol $ dead-letter-retry <id>   retry the saga of a dead letter
 *   mol $ dead-letter-resolve <id> [note...]   close it: settled by hand
 */
import type { ServiceBroker } from "moleculer";

interface ReplArgs {
	id?: string;
	status?: string;
	note?: string[] | string;
	options?: Record<string, unknown>;
}

interface ReplCommand {
	command: string;
	description: string;
	action(broker: ServiceBroker, args: ReplArgs): Promise<void>;
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** Runs the call and prints its answer, or the error's type and message (never a stack). */
async function show(run: () => Promise<unknown>): Promise<void> {
	try {
		print(await run());
	} catch (err) {
		const e = err as { type?: string; message?: string; data?: unknown };
		print({ error: e.type ?? "ERROR", message: e.message, data: e.data });
	}
}

export const sagaReplCommands: ReplCommand[] = [
	{
		command: "sagas [status]",
		description: "List sagas, newest first (status: RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED)",
		action: (broker, args) => show(() => broker.call("saga.list", args.status ? { status: args.status.toUpperCase(), pageSize: 50 } : { pageSize: 50 }))
	},
	{
		command: "saga <id>",
		description: "Show a saga with its step journal and dead letters",
		action: (broker, args) => show(() => broker.call("saga.get", { id: args.id }))
	},
	{
		command: "saga-retry <id>",
		description: "Resume a FAILED saga where it stopped",
		action: (broker, args) => show(() => broker.call("saga.retry", { id: args.id }))
	},
	{
		command: "dead-letters",
		description: "List open dead letters",
		action: broker => show(() => broker.call("saga.deadLetters", { status: "OPEN", pageSize: 100 }))
	},
	{
		command: "dead-letter-retry <id>",
		description: "Retry the saga of a dead letter",
		action: (broker, args) => show(() => broker.call("saga.retryDeadLetter", { id: args.id }))
	},
	{
		command: "dead-letter-resolve <id> [note...]",
		description: "Mark a dead letter resolved (settled by hand); the saga stays FAILED",
		action: (broker, args) => {
			const note = Array.isArray(args.note) ? args.note.join(" ") : args.note;
			return show(() => broker.call("saga.resolveDeadLetter", note ? { id: args.id, note } : { id: args.id }));
		}
	}
];
