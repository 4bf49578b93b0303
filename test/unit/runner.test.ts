/**
 * The cluster topology `npm run cluster` and the benchmark start (lib/runner.ts).
 */
import { clusterNodeOptions, clusterTopology, DEFAULT_TOPOLOGY, instanceArgs } from "../../lib/runner";

describe("cluster topology", () => {
	it("when CLUSTER_NODES is unset, then the default runs the gateway as two workers and every service somewhere", () => {
		expect(clusterTopology(undefined)).toBe(DEFAULT_TOPOLOGY);
		const gateway = DEFAULT_TOPOLOGY.find(n => n.services.includes("api"))!;
		expect(instanceArgs(gateway)).toEqual(["--instances", "2"]);
		const all = new Set(DEFAULT_TOPOLOGY.flatMap(n => n.services));
		for (const s of ["api", "user", "concert", "queue", "reservation", "saga", "payment", "ranking", "notification", "review", "ops"]) {
			expect(all.has(s)).toBe(true);
		}
	});

	it("when CLUSTER_NODES names nodes, then repeated names are numbered and name*N asks for N workers", () => {
		expect(clusterTopology("gateway*3=api,queue;accounts=user;accounts=user")).toEqual([
			{ name: "gateway-1", services: ["api", "queue"], instances: 3 },
			{ name: "accounts-1", services: ["user"] },
			{ name: "accounts-2", services: ["user"] }
		]);
		expect(instanceArgs({ name: "a", services: ["user"] })).toEqual([]);
		expect(instanceArgs({ name: "a", services: ["user"], instances: 1 })).toEqual([]);
	});

	it("when a worker count is not a whole number from 1 to 16, then the topology is refused", () => {
		for (const bad of ["gateway*0=api", "gateway*x=api", "gateway*1.5=api", "gateway*17=api", "gateway*=api"]) {
			expect(() => clusterTopology(bad)).toThrow(/CLUSTER_NODES/);
		}
	});

	it("when the caller sets NODE_OPTIONS, then its flags come after the heap limits (the later flag wins)", () => {
		expect(clusterNodeOptions(undefined)).toBe("--max-old-space-size=128 --max-semi-space-size=4");
		expect(clusterNodeOptions("--max-old-space-size=512")).toBe("--max-old-space-size=128 --max-semi-space-size=4 --max-old-space-size=512");
	});
});
