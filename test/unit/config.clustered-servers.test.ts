/**
 * The configuration of clustered servers (issue 21): a Redis Cluster named by REDIS_CLUSTER_NODES or by several
 * hosts in REDIS_URL, and the JetStream replica count. (A database per service has its own file.)
 */
import { loadConfig } from "../../lib/config";
import { problemsOf } from "../support/config-problems";

const CLUSTER = {
	TRANSPORTER: "nats://n1:4222,nats://n2:4222,nats://n3:4222",
	DATABASE_URL: "mysql://root@db:3306",
	JWT_SECRET: "x".repeat(32),
	CLUSTER_SECRET: "c".repeat(32)
};

describe("configuration of clustered servers", () => {
	it("when REDIS_CLUSTER_NODES is set, then the store is a Redis Cluster seeded by those nodes", () => {
		const c = loadConfig({ ...CLUSTER, REDIS_CLUSTER_NODES: "r1:7000, r2:7001,r3:7002" });
		expect(c.redis).toEqual({ url: "redis://r1:7000", clusterNodes: ["r1:7000", "r2:7001", "r3:7002"], failoverBudgetMs: 8000 });
	});

	it("when REDIS_CLUSTER_NODES comes with a REDIS_URL, then the URL gives the credentials and TLS", () => {
		const c = loadConfig({ ...CLUSTER, REDIS_URL: "rediss://app:s3cret@r1:7000", REDIS_CLUSTER_NODES: "r1:7000,r2:7001" });
		expect(c.redis).toEqual({ url: "rediss://app:s3cret@r1:7000", clusterNodes: ["r1:7000", "r2:7001"], failoverBudgetMs: 8000 });
	});

	it("when REDIS_URL names several hosts, then that is the cluster, with the URL's credentials", () => {
		const c = loadConfig({ ...CLUSTER, REDIS_URL: "redis://:pw@r1:7000,r2:7001,r3:7002" });
		expect(c.redis).toEqual({ url: "redis://:pw@r1:7000", clusterNodes: ["r1:7000", "r2:7001", "r3:7002"], failoverBudgetMs: 8000 });
	});

	it("when one REDIS_URL names a single host, then it is a single server as before", () => {
		expect(loadConfig({ ...CLUSTER, REDIS_URL: "redis://cache:6379/0" }).redis).toEqual({ url: "redis://cache:6379/0" });
	});

	it("when the cluster is named twice or a node is not host:port, then start-up says so without the password", () => {
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://:pw1@r1:7000,r2:7001", REDIS_CLUSTER_NODES: "r1:7000" })).toEqual([
			expect.stringMatching(/name the cluster twice/)
		]);
		for (const nodes of ["r1", "r1:7000,:7001", "r1:99999", "redis://r1:7000"]) {
			const problems = problemsOf({ ...CLUSTER, REDIS_CLUSTER_NODES: nodes });
			expect(problems).toEqual([expect.stringMatching(/host:port/)]);
		}
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://:pw1@r1:7000,r2" }).join("\n")).not.toContain("pw1");
	});

	it("when REDIS_CLUSTER_NODES is set without REDIS_URL, then cluster mode accepts it as its shared store", () => {
		expect(problemsOf({ ...CLUSTER, REDIS_CLUSTER_NODES: "r1:7000" })).toEqual([]);
	});

	it("when JETSTREAM_REPLICAS is set, then the streams get that many copies, 1 by default", () => {
		expect(loadConfig({ ...CLUSTER, REDIS_URL: "redis://r:6379" }).events.replicas).toBe(1);
		expect(loadConfig({ ...CLUSTER, REDIS_URL: "redis://r:6379", JETSTREAM_REPLICAS: "3" }).events.replicas).toBe(3);
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://r:6379", JETSTREAM_REPLICAS: "6" })).toEqual([expect.stringMatching(/JETSTREAM_REPLICAS/)]);
		expect(problemsOf({ JETSTREAM_REPLICAS: "3" })).toEqual([expect.stringMatching(/JETSTREAM_REPLICAS needs TRANSPORTER/)]);
	});

	it("when the store prefix holds a brace, then it is refused: it would decide every key's cluster slot", () => {
		for (const prefix of ["crp{:", "crp{x}:", "a}b:"]) {
			expect(problemsOf({ ...CLUSTER, REDIS_CLUSTER_NODES: "r1:7000", STORE_PREFIX: prefix })).toEqual([
				expect.stringMatching(/STORE_PREFIX may not hold/)
			]);
		}
	});

	it("when REDIS_FAILOVER_BUDGET_MS is set, then a cluster retries that long, 8 s by default; it means nothing for one server", () => {
		expect(loadConfig({ ...CLUSTER, REDIS_CLUSTER_NODES: "r1:7000" }).redis?.failoverBudgetMs).toBe(8000);
		expect(loadConfig({ ...CLUSTER, REDIS_CLUSTER_NODES: "r1:7000", REDIS_FAILOVER_BUDGET_MS: "20000" }).redis?.failoverBudgetMs).toBe(20000);
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://r:6379", REDIS_FAILOVER_BUDGET_MS: "20000" })).toEqual([
			expect.stringMatching(/Redis Cluster only/)
		]);
	});

	it("when a cluster's REDIS_URL names a database other than 0, then it is refused", () => {
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://r1:7000,r2:7001/3" })).toEqual([expect.stringMatching(/only database 0/)]);
		expect(problemsOf({ ...CLUSTER, REDIS_URL: "redis://r1:7000/0", REDIS_CLUSTER_NODES: "r1:7000" })).toEqual([]);
	});

	it("when JETSTREAM_REPLICAS is above the servers TRANSPORTER lists, then the node warns", () => {
		const c = loadConfig({ ...CLUSTER, TRANSPORTER: "nats://n1:4222", REDIS_URL: "redis://r:6379", JETSTREAM_REPLICAS: "3" });
		expect(c.warnings.join("\n")).toMatch(/JETSTREAM_REPLICAS=3 but TRANSPORTER lists 1 server/);
		expect(loadConfig({ ...CLUSTER, REDIS_URL: "redis://r:6379", JETSTREAM_REPLICAS: "3" }).warnings.join("\n")).not.toMatch(/JETSTREAM_REPLICAS/);
	});
});
