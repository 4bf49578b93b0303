/**
 * A REPL started with the wrong NAMESPACE (issue 19): it joined NATS, saw none of the cluster's nodes (a node only
 * sees nodes of its own namespace), opened its prompt as usual, and answered every command with SERVICE_NOT_FOUND
 * and nothing to say why. Now it waits a moment for discovery and warns that it is alone, naming the namespace and
 * transporter it used, and each SERVICE_NOT_FOUND says it again. The real script (scripts/repl.ts) runs in its own
 * process beside a running node, with a namespace nobody uses; the same checks in-process show what a REPL that
 * does see the cluster prints.
 */
import { spawn, type ChildProcess } from "child_process";
import path from "path";
import type { ServiceBroker } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { otherNodes, ReplHintsMiddleware, warnIfAlone } from "../../lib/repl-commands";
import { testEnv, waitFor, type TestEnv } from "../support/harness";
import { NATS_URL } from "../support/isolation";
import { SchemaNodes } from "../support/saga";
import { replCommand } from "../support/repl";
import { endProcess } from "../support/server-process";

const ROOT = path.resolve(__dirname, "../..");

describe("REPL in a namespace nobody uses (cluster)", () => {
	let env: TestEnv;
	let nodes: SchemaNodes;
	let node: ServiceBroker;
	let repl: ChildProcess | undefined;
	let out = "";

	const command = (line: string, until: RegExp, timeoutMs = 10_000) => replCommand(repl!, () => out, line, until, timeoutMs);

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		nodes = new SchemaNodes(env);
		// The cluster: one node in this run's namespace, on the same NATS.
		node = await nodes.node([{ name: "echo", actions: { hi: { visibility: "public", handler: () => "hi" } } }], `${env.id}-echo`);
	}, 60_000);

	afterAll(async () => {
		await endProcess(repl);
		await nodes.stop();
		await env.cleanup();
	}, 60_000);

	it("when the REPL's NAMESPACE is not the cluster's, then it warns at start that it is alone, with the namespace and transporter, and explains each SERVICE_NOT_FOUND", async () => {
		const wrong = `${env.id}-typo`;
		repl = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/repl.ts"], {
			cwd: ROOT,
			env: { ...process.env, ...env.env, NAMESPACE: wrong, LOG_LEVEL: "warn", HOME: env.env.DATA_DIR },
			stdio: ["pipe", "pipe", "pipe"]
		});
		repl.stdout!.on("data", d => (out += d.toString()));
		repl.stderr!.on("data", d => (out += d.toString()));
		await waitFor(() => /crp \$/.test(out) || repl!.exitCode !== null, 45_000, `the REPL prompt (got: ${out})`);

		// Printed before the prompt: the namespace it used, the NATS it used, and what to do.
		const before = out.slice(0, out.search(/crp \$/));
		expect(before).toContain(`WARNING: no other node in namespace "${wrong}" on ${NATS_URL} after 3 s`);
		expect(before).toMatch(/every call will answer SERVICE_NOT_FOUND/);
		expect(before).toMatch(/Start the REPL with the cluster's NAMESPACE/);

		// The built-in `call` and our own commands both explain the SERVICE_NOT_FOUND.
		const called = await command("call echo.hi", /hint: SERVICE_NOT_FOUND[^\n]*\n[\s\S]*(ERROR|error)/);
		expect(called).toContain(`hint: SERVICE_NOT_FOUND because this REPL sees no other node in namespace "${wrong}" on ${NATS_URL}.`);
		const ours = await command("queue some-concert", /error SERVICE_NOT_FOUND/);
		expect(ours).toMatch(/hint: SERVICE_NOT_FOUND because this REPL sees no other node/);
	}, 90_000);

	it("when the REPL's node does see the cluster, then it does not warn, and a SERVICE_NOT_FOUND names the nodes it sees instead", async () => {
		let printed = "";
		const write = { write: (s: string) => void (printed += s) };
		const reach = { namespace: env.config.namespace, transporter: env.config.transporter?.url };
		const own = brokerOptions({ ...env.config, nodeID: `${env.id}-repl` });
		const replNode = await nodes.node([], `${env.id}-repl`, { middlewares: [...(own.middlewares ?? []), ReplHintsMiddleware(reach, write)] });
		expect(await warnIfAlone(replNode, reach, { waitMs: 5000, out: write })).toBe(false);
		expect(otherNodes(replNode)).toContain(node.nodeID);
		expect(printed).toBe("");

		await expect(replNode.call("nothing.here")).rejects.toMatchObject({ type: "SERVICE_NOT_FOUND" });
		expect(printed).toMatch(new RegExp(`none of the \\d+ other node\\(s\\) in namespace "${env.id}" on \\S+ offers nothing\\.here`));
		expect(await replNode.call("echo.hi")).toBe("hi");
	}, 30_000);
});
