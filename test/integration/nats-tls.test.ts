/**
 * NATS with TLS, as the README's Security section describes it: a private NATS server that requires TLS (and a
 * client certificate) and a password, a CA made for the test with openssl, and platform nodes configured only
 * through the environment (TRANSPORTER=tls://..., NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY, NATS_USER/PASSWORD).
 * Calls between nodes and the JetStream event bus both go over it; a client that does not trust the CA, or has no
 * certificate, is refused.
 */
import { execFileSync } from "child_process";
import crypto from "crypto";
import fs from "fs";
import os from "os";
import path from "path";
import { connect } from "nats";
import type { ServiceBroker } from "moleculer";
import { createEventBus } from "../../lib/events";
import { loadConfig } from "../../lib/config";
import { makeEvent } from "../support/events";
import { testEnv, waitFor, type TestEnv } from "../support/harness";
import { startNatsServer, type PrivateNats } from "../support/nats-server";

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
function makePki(dir: string): Record<"ca" | "serverCert" | "serverKey" | "clientCert" | "clientKey", string> {
	const f = (name: string) => path.join(dir, name);
	const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
	ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=crp-test-ca", "-keyout", f("ca-key.pem"), "-out", f("ca.pem"));
	fs.writeFileSync(f("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
	for (const who of ["server", "client"]) {
		ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=crp-${who}`, "-keyout", f(`${who}-key.pem`), "-out", f(`${who}.csr`));
		const ext = who === "server" ? ["-extfile", f("server.ext")] : [];
		ssl(
			"x509",
			"-req",
			"-in",
			f(`${who}.csr`),
			"-CA",
			f("ca.pem"),
			"-CAkey",
			f("ca-key.pem"),
			"-CAcreateserial",
			"-days",
			"1",
			"-out",
			f(`${who}.pem`),
			...ext
		);
	}
	return { ca: f("ca.pem"), serverCert: f("server.pem"), serverKey: f("server-key.pem"), clientCert: f("client.pem"), clientKey: f("client-key.pem") };
}

describe("NATS with TLS and a client certificate", () => {
	let dir: string;
	let pki: ReturnType<typeof makePki>;
	let nats: PrivateNats;
	let env: TestEnv;
	const password = crypto.randomBytes(12).toString("hex");

	beforeAll(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-pki-"));
		pki = makePki(dir);
		nats = await startNatsServer({ user: "crp", password, tls: { cert: pki.serverCert, key: pki.serverKey, verifyClientsWith: pki.ca } });
		env = testEnv({
			cluster: true,
			env: {
				TRANSPORTER: `tls://127.0.0.1:${nats.port}`,
				NATS_USER: "crp",
				NATS_PASSWORD: password,
				NATS_TLS_CA: pki.ca,
				NATS_TLS_CERT: pki.clientCert,
				NATS_TLS_KEY: pki.clientKey
			}
		});
	}, 60_000);
	afterAll(async () => {
		await env?.cleanup();
		await nats?.stop();
		fs.rmSync(dir, { recursive: true, force: true });
	}, 60_000);

	it("when nodes are configured from the environment, then they call each other over TLS", async () => {
		const [, caller]: ServiceBroker[] = await Promise.all([env.broker(["user"]), env.broker([])]);
		await caller.waitForServices(["user"], 20_000);
		expect(await caller.call("user.health")).toMatchObject({ ok: true });
	});

	it("when events are published and consumed, then the JetStream connection uses the same TLS settings", async () => {
		const bus = createEventBus(env.config, "tls-test");
		const seen: string[] = [];
		try {
			await bus.subscribe({ group: "tls-check", types: ["reservation.confirmed"], handler: async e => void seen.push(e.id) });
			const event = makeEvent("reservation.confirmed", "r-tls", 2, { reservationId: "r-tls" });
			await bus.publish(event);
			await waitFor(() => seen.includes(event.id), 10_000, "the event over TLS");
		} finally {
			await bus.close();
		}
	});

	it("when a client does not trust the CA, or has no client certificate, or no password, then the server refuses it", async () => {
		const servers = `127.0.0.1:${nats.port}`;
		await expect(connect({ servers, user: "crp", pass: password, tls: { certFile: pki.clientCert, keyFile: pki.clientKey } })).rejects.toBeDefined();
		await expect(connect({ servers, user: "crp", pass: password, tls: { caFile: pki.ca } })).rejects.toBeDefined();
		await expect(
			connect({ servers, user: "crp", pass: "wrong", tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } })
		).rejects.toMatchObject({
			code: "AUTHORIZATION_VIOLATION"
		});
		const ok = await connect({ servers, user: "crp", pass: password, tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } });
		await ok.close();
	});

	it("when TRANSPORTER says tls:// and the files exist, then the config hands them to the client", () => {
		expect(loadConfig(env.env).transporter!.tls).toEqual({ caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey });
	});
});
