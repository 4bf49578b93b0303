/**
 * The Kubernetes manifests (deploy/k8s): every YAML document validates against its kind's schema
 * (kubernetes-models: the OpenAPI schemas of the Kubernetes API, compiled to validators), and the overlays render
 * and agree with what the platform itself says: the node groups of lib/runner.ts and docker-compose.yml, the
 * variables lib/config.ts reads, the ports the containers expose, the graceful stop of moleculer.config.ts.
 *
 * Why it renders the kustomize overlays itself: the suite must not depend on a kubectl or kustomize binary (CI
 * has none, and there is no cluster). `render` below implements only what the overlays here use, and refuses
 * anything else (so an overlay cannot silently outgrow it):
 * - `resources` (files, and directories holding a kustomization.yaml), `namespace`;
 * - `images` (name, newName, newTag), `replicas` (name, count);
 * - `patches` given by `path`: strategic-merge patches, each document's target found by apiVersion, kind and name.
 *   Maps merge; the lists `containers`, `initContainers`, `env`, `volumes` (by `name`) and `volumeMounts` (by
 *   `mountPath`) merge by their key (in kustomize's order: the patch's items, then the target's others); any other list in a patch replaces the whole list, as kustomize does for
 *   lists without a merge key. Not supported (an error): `$patch` directives, JSON 6902 patches, patches with
 *   `target`, patching a list that Kubernetes merges by another key (`ports`, `topologySpreadConstraints`,
 *   `tolerations`...), generators, `commonLabels`/`labels`, components.
 * When kubectl is installed (`kubectl kustomize`, kustomize built in), the same overlays are rendered by it too and
 * must equal this renderer's output, object by object.
 *
 * What it does not check: fields a schema does not know (kubernetes-models' validators ignore extra properties, so
 * a misspelt optional field passes; the cross-checks below cover the fields that matter here), admission (Pod
 * Security, quotas), and anything that needs a cluster or the servers (the probes' answers themselves are the
 * integration suites' business, except the exec readiness probe's script, which runs here against a local metrics
 * server).
 */
import { spawn, spawnSync } from "child_process";
import fs from "fs";
import http from "http";
import type { AddressInfo } from "net";
import path from "path";
import { ServiceBroker } from "moleculer";
import YAML from "yaml";
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy, type INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget, type IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap, type IConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret, type ISecret } from "kubernetes-models/v1/Secret";
import { Service, type IService } from "kubernetes-models/v1/Service";
import { ConfigError, DATABASE_SERVICES, loadConfig } from "../../lib/config";
import { DEFAULT_TOPOLOGY } from "../../lib/runner";

const ROOT = path.resolve(__dirname, "../..");
const K8S = path.join(ROOT, "deploy/k8s");
const BASE = path.join(K8S, "base");
const OVERLAYS = fs.readdirSync(path.join(K8S, "overlays")).map(name => path.join(K8S, "overlays", name));
const SECRET_TEMPLATE = path.join(BASE, "secret.example.yaml");

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };
type Container = NonNullable<NonNullable<NonNullable<IDeployment["spec"]>["template"]["spec"]>["containers"]>[number];

// ---------------------------------------------------------------------------------------------------------------
// Schemas

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
	"v1/Namespace": Namespace,
	"v1/ConfigMap": ConfigMap,
	"v1/Secret": Secret,
	"v1/Service": Service,
	"apps/v1/Deployment": Deployment,
	"autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
	"policy/v1/PodDisruptionBudget": PodDisruptionBudget,
	"networking.k8s.io/v1/NetworkPolicy": NetworkPolicy
};

/** Validates one object against its kind's schema; throws with the kind, the name and the schema's message. */
function validate(obj: Obj): void {
	const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
	if (!Model) throw new Error(`${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}: no schema registered in this test (add its kubernetes-models class)`);
	try {
		new Model(obj as never).validate();
	} catch (err) {
		throw new Error(`${obj.kind}/${obj.metadata?.name}: ${(err as Error).message}`);
	}
}

function readDocs(file: string): Obj[] {
	const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
	for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map(e => e.message).join("; ")}`);
	return docs.map(d => d.toJS() as Obj).filter(d => d !== null);
}

function yamlFiles(dir: string): string[] {
	return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e => {
		const p = path.join(dir, e.name);
		return e.isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(e.name) ? [p] : [];
	});
}

// ---------------------------------------------------------------------------------------------------------------
// A small kustomize (see the header for what it supports)

interface Kustomization {
	apiVersion?: string;
	kind?: string;
	namespace?: string;
	resources?: string[];
	images?: { name: string; newName?: string; newTag?: string }[];
	replicas?: { name: string; count: number }[];
	patches?: { path: string }[];
}
const KUSTOMIZATION_FIELDS = new Set(["apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"]);
/** Kinds that live in a namespace (those used here). */
const CLUSTER_SCOPED = new Set(["Namespace"]);
const MERGE_KEYS: Record<string, string> = { containers: "name", initContainers: "name", env: "name", volumes: "name", volumeMounts: "mountPath" };
const UNSUPPORTED_LISTS = new Set(["ports", "topologySpreadConstraints", "tolerations", "imagePullSecrets", "hostAliases", "envFrom"]);

/** Every file a kustomization reads (resources, patches), for the check that no YAML file is left out. */
const kustomizeInputs = new Set<string>();

function readKustomization(dir: string): Kustomization {
	const file = path.join(dir, "kustomization.yaml");
	kustomizeInputs.add(file);
	const k = YAML.parse(fs.readFileSync(file, "utf8")) as Kustomization;
	const unknown = Object.keys(k).filter(f => !KUSTOMIZATION_FIELDS.has(f));
	if (unknown.length > 0) throw new Error(`${file}: ${unknown.join(", ")} not supported by this test's renderer (see its header)`);
	if (k.apiVersion !== "kustomize.config.k8s.io/v1beta1" || k.kind !== "Kustomization")
		throw new Error(`${file}: not a kustomize.config.k8s.io/v1beta1 Kustomization`);
	for (const p of k.patches ?? []) {
		if (Object.keys(p).join() !== "path") throw new Error(`${file}: only patches given by path are supported, got ${JSON.stringify(p)}`);
	}
	return k;
}

function isMap(v: unknown): v is Record<string, unknown> {
	return typeof v === "object" && v !== null && !Array.isArray(v);
}

function strategicMerge(target: unknown, patch: unknown, key = ""): unknown {
	if (isMap(patch)) {
		if ("$patch" in patch) throw new Error(`$patch directives are not supported (at ${key})`);
		const out: Record<string, unknown> = isMap(target) ? { ...target } : {};
		for (const [k, v] of Object.entries(patch)) out[k] = v === null ? undefined : strategicMerge(out[k], v, k);
		for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
		return out;
	}
	if (Array.isArray(patch)) {
		if (UNSUPPORTED_LISTS.has(key)) throw new Error(`patching the list "${key}" is not supported by this test's renderer`);
		const mergeKey = MERGE_KEYS[key];
		if (!mergeKey) return patch;
		// As kustomize orders them: the patch's items (merged with the target's of the same key), then the rest.
		const rest = Array.isArray(target) ? [...(target as Record<string, unknown>[])] : [];
		const out = (patch as Record<string, unknown>[]).map(item => {
			const i = rest.findIndex(o => o[mergeKey] === item[mergeKey]);
			return i < 0 ? item : (strategicMerge(rest.splice(i, 1)[0], item, "") as Record<string, unknown>);
		});
		return [...out, ...rest];
	}
	return patch;
}

function podContainers(obj: Obj): Container[] {
	const spec = (obj as unknown as IDeployment).spec?.template?.spec;
	return [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])];
}

function render(dir: string): Obj[] {
	const k = readKustomization(dir);
	let objs: Obj[] = [];
	for (const r of k.resources ?? []) {
		const p = path.resolve(dir, r);
		if (fs.statSync(p).isDirectory()) objs.push(...render(p));
		else {
			kustomizeInputs.add(p);
			objs.push(...readDocs(p));
		}
	}
	objs = structuredClone(objs);
	if (k.namespace) for (const o of objs) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
	for (const p of k.patches ?? []) {
		const file = path.resolve(dir, p.path);
		kustomizeInputs.add(file);
		for (const patch of readDocs(file)) {
			const i = objs.findIndex(o => o.apiVersion === patch.apiVersion && o.kind === patch.kind && o.metadata.name === patch.metadata.name);
			if (i < 0) throw new Error(`${file}: no ${patch.kind}/${patch.metadata.name} to patch`);
			objs[i] = strategicMerge(objs[i], patch) as Obj;
		}
	}
	for (const img of k.images ?? []) {
		for (const o of objs) {
			for (const c of podContainers(o)) {
				const m = /^(.*?)(?::([^:/]+))?$/.exec(c.image ?? "")!;
				if (m[1] !== img.name) continue;
				c.image = `${img.newName ?? m[1]}${(img.newTag ?? m[2]) ? `:${img.newTag ?? m[2]}` : ""}`;
			}
		}
	}
	for (const r of k.replicas ?? []) {
		const d = objs.find(o => o.kind === "Deployment" && o.metadata.name === r.name);
		if (!d) throw new Error(`${dir}: replicas names ${r.name}, which is no Deployment`);
		(d as unknown as IDeployment).spec!.replicas = r.count;
	}
	return objs;
}

const idOf = (o: Obj) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;
const byKind = <T>(objs: Obj[], kind: string) => objs.filter(o => o.kind === kind) as unknown as (T & Obj)[];

// ---------------------------------------------------------------------------------------------------------------
// What the platform says

/** Environment variables lib/config.ts reads by name, and the per-service database variables it accepts. */
function configVariables(): Set<string> {
	const src = fs.readFileSync(path.join(ROOT, "lib/config.ts"), "utf8");
	const names = new Set<string>();
	for (const m of src.matchAll(/\b(?:str|int|bool)\(\s*"([A-Z][A-Z0-9_]*)"/g)) names.add(m[1]);
	for (const m of src.matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b/g)) names.add(m[1]);
	for (const s of DATABASE_SERVICES) for (const v of ["DATABASE_URL", "DATABASE_USER", "DATABASE_PASSWORD"]) names.add(`${v}_${s.toUpperCase()}`);
	// Read by Node.js itself, not by the platform: the heap limits of lib/runner.ts.
	names.add("NODE_OPTIONS");
	return names;
}

/** The node groups of lib/runner.ts (`catalog-1`, `catalog-2` -> `catalog`), each with its services. */
function topologyGroups(): Map<string, string[]> {
	const groups = new Map<string, string[]>();
	for (const n of DEFAULT_TOPOLOGY) groups.set(n.name.replace(/-\d+$/, ""), [...n.services].sort());
	return groups;
}

function composeGroups(): Map<string, string[]> {
	const compose = YAML.parse(fs.readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
		services: Record<string, { environment?: Record<string, string> }>;
	};
	const groups = new Map<string, string[]>();
	for (const [name, svc] of Object.entries(compose.services)) {
		const services = svc.environment?.SERVICES;
		if (services) groups.set(name, services.split(",").sort());
	}
	return groups;
}

const templateSecrets = () => readDocs(SECRET_TEMPLATE) as unknown as (ISecret & Obj)[];

/** Values that lib/config.ts accepts, standing in for the real secrets. */
function testSecretValue(key: string): string {
	if (key === "JWT_SECRET") return "j".repeat(48);
	if (key === "CLUSTER_SECRET") return "c".repeat(48);
	if (key === "REDIS_URL") return "redis://:pw@redis.test:6379";
	if (key === "ADMIN_EMAIL") return "admin@example.com";
	return "test-value-1";
}

/**
 * The environment a container of a Deployment starts with: its ConfigMap and Secret sources (`envFrom`, later
 * ones winning), then its `env` entries; secrets from the template's keys with stand-in values (or its own
 * placeholders). Throws when a source or a key it names is in neither the rendered objects nor the template.
 */
function containerEnv(objs: Obj[], c: Container, secrets: "test" | "placeholders" = "test"): Record<string, string> {
	const env: Record<string, string> = {};
	const secretData = (name: string): Record<string, string> | undefined => {
		const s = templateSecrets().find(t => t.metadata.name === name);
		if (!s) return undefined;
		return Object.fromEntries(Object.entries(s.stringData ?? {}).map(([k, v]) => [k, secrets === "test" ? testSecretValue(k) : v]));
	};
	for (const from of c.envFrom ?? []) {
		if (from.configMapRef) {
			const cm = byKind<IConfigMap>(objs, "ConfigMap").find(m => m.metadata.name === from.configMapRef!.name);
			if (!cm) throw new Error(`envFrom names ConfigMap ${from.configMapRef.name}, which is not rendered`);
			Object.assign(env, cm.data);
		}
		if (from.secretRef) {
			const data = secretData(from.secretRef.name!);
			if (!data) throw new Error(`envFrom names Secret ${from.secretRef.name}, which secret.example.yaml does not describe`);
			Object.assign(env, data);
		}
	}
	for (const e of c.env ?? []) {
		if (e.value !== undefined) env[e.name] = e.value;
		else if (e.valueFrom?.secretKeyRef) {
			const ref = e.valueFrom.secretKeyRef;
			const data = secretData(ref.name!);
			if (!data || !(ref.key in data)) throw new Error(`${e.name}: Secret ${ref.name} key ${ref.key} is not in secret.example.yaml`);
			env[e.name] = data[ref.key];
		} else throw new Error(`${e.name}: only value and secretKeyRef are expected`);
	}
	return env;
}

function portNumber(c: Container, port: number | string | undefined): number | undefined {
	if (typeof port === "number") return c.ports?.some(p => p.containerPort === port) ? port : undefined;
	return c.ports?.find(p => p.name === port)?.containerPort;
}

function mebibytes(q: string | number | undefined): number {
	const m = /^(\d+(?:\.\d+)?)(Mi|Gi)$/.exec(String(q));
	if (!m) throw new Error(`memory quantity ${q}: expected Mi or Gi`);
	return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
	return !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

// ---------------------------------------------------------------------------------------------------------------

const RENDERS: [string, string][] = [["base", BASE], ...OVERLAYS.map(dir => [`overlays/${path.basename(dir)}`, dir] as [string, string])];
const rendered = new Map(RENDERS.map(([name, dir]) => [name, render(dir)]));

describe("deploy/k8s: schemas", () => {
	it("has a base and the production and small overlays", () => {
		expect(RENDERS.map(([n]) => n)).toEqual(expect.arrayContaining(["base", "overlays/production", "overlays/small"]));
	});

	it("every YAML file is a kustomization, one of its resources or patches, or the Secret template", () => {
		const files = yamlFiles(K8S);
		const orphans = files.filter(f => !kustomizeInputs.has(f) && f !== SECRET_TEMPLATE);
		expect(orphans).toEqual([]);
	});

	it("every resource document and the Secret template validate against their kind's schema", () => {
		const resourceFiles = [...kustomizeInputs].filter(f => !/kustomization\.yaml$/.test(f));
		const patchFiles = new Set(RENDERS.flatMap(([, dir]) => (readKustomization(dir).patches ?? []).map(p => path.resolve(dir, p.path))));
		let count = 0;
		for (const file of [...resourceFiles.filter(f => !patchFiles.has(f)), SECRET_TEMPLATE]) {
			for (const doc of readDocs(file)) {
				expect(() => validate(doc)).not.toThrow();
				count++;
			}
		}
		expect(count).toBeGreaterThanOrEqual(16);
	});

	it.each(RENDERS)("%s renders, and every rendered object validates", name => {
		const objs = rendered.get(name)!;
		const ids = objs.map(idOf);
		expect(new Set(ids).size).toBe(ids.length);
		for (const o of objs) expect(() => validate(o)).not.toThrow();
		expect(
			byKind(objs, "Deployment")
				.map(d => d.metadata.name)
				.sort()
		).toEqual(["booking", "catalog", "events", "gateway"]);
		for (const o of objs) if (o.kind !== "Namespace") expect(o.metadata.namespace).toBe("crp");
	});

	it("a schema violation is caught (the validator is not a no-op)", () => {
		const gateway = structuredClone(byKind<IDeployment>(rendered.get("base")!, "Deployment").find(d => d.metadata.name === "gateway")!);
		(gateway.spec!.template.spec!.containers[0].ports![0] as { containerPort: unknown }).containerPort = "http";
		expect(() => validate(gateway)).toThrow(/containerPort/);
	});

	const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
	const haveKubectl = kubectl.status === 0;
	it.each(RENDERS)(
		`%s: this renderer's output equals \`kubectl kustomize\`'s (${haveKubectl ? "kubectl found" : "kubectl not installed: compared with nothing"})`,
		(_, dir) => {
			if (!haveKubectl) return;
			const out = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
			expect(out.stderr).toBe("");
			expect(out.status).toBe(0);
			const theirs = new Map(
				YAML.parseAllDocuments(out.stdout)
					.map(d => d.toJS() as Obj)
					.map(o => [idOf(o), o])
			);
			const ours = new Map(render(dir).map(o => [idOf(o), o]));
			expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
			for (const [id, o] of ours) expect([id, o]).toEqual([id, theirs.get(id)]);
		}
	);
});

describe.each(RENDERS)("deploy/k8s %s: agrees with the platform", name => {
	const objs = rendered.get(name)!;
	const deployments = byKind<IDeployment>(objs, "Deployment");
	const container = (d: IDeployment) => d.spec!.template.spec!.containers[0];
	const known = configVariables();

	it("each Deployment runs the SERVICES of its node group in lib/runner.ts and docker-compose.yml", () => {
		const topology = topologyGroups();
		const compose = composeGroups();
		expect([...topology.keys()].sort()).toEqual(deployments.map(d => d.metadata.name).sort());
		for (const d of deployments) {
			const services = container(d)
				.env!.find(e => e.name === "SERVICES")!
				.value!.split(",")
				.sort();
			expect([d.metadata.name, services]).toEqual([d.metadata.name, topology.get(d.metadata.name)]);
			expect([d.metadata.name, services]).toEqual([d.metadata.name, compose.get(d.metadata.name)]);
		}
	});

	it("sets only variables lib/config.ts reads (or NODE_OPTIONS), and none both in the ConfigMap and a Secret", () => {
		const set = new Set<string>();
		for (const cm of byKind<IConfigMap>(objs, "ConfigMap")) for (const k of Object.keys(cm.data ?? {})) set.add(k);
		for (const s of templateSecrets()) for (const k of Object.keys(s.stringData ?? {})) set.add(k);
		for (const d of deployments) for (const e of container(d).env ?? []) set.add(e.name);
		expect([...set].filter(v => !known.has(v))).toEqual([]);
		const cmKeys = byKind<IConfigMap>(objs, "ConfigMap").flatMap(cm => Object.keys(cm.data ?? {}));
		const secretKeys = templateSecrets().flatMap(s => Object.keys(s.stringData ?? {}));
		expect(cmKeys.filter(k => secretKeys.includes(k))).toEqual([]);
	});

	it("each container's environment passes loadConfig, in cluster mode, with its own services", () => {
		for (const d of deployments) {
			const env = containerEnv(objs, container(d));
			let config;
			try {
				config = loadConfig(env);
			} catch (err) {
				throw new Error(`${d.metadata.name}: ${err instanceof ConfigError ? err.problems.join("; ") : err}`);
			}
			expect(config.mode).toBe("cluster");
			expect(config.nodeEnv).toBe("production");
			expect(config.services).toEqual(env.SERVICES.split(","));
			expect(config.metricsHost).toBe("0.0.0.0");
			expect(portNumber(container(d), "metrics")).toBe(config.metricsPort);
			if (d.metadata.name === "gateway") expect(portNumber(container(d), "http")).toBe(config.port);
			if (name === "overlays/production") {
				expect(config.transporter!.servers).toHaveLength(3);
				expect(config.events.replicas).toBe(3);
				expect(config.redis!.clusterNodes!.length).toBeGreaterThanOrEqual(3);
				// Above a stock cluster's cluster-node-timeout (15 s) plus the election (deploy/k8s/README.md).
				expect(config.redis!.failoverBudgetMs).toBeGreaterThanOrEqual(20_000);
				if (d.metadata.name === "booking") {
					expect(config.sqlByService.payment.host).not.toBe(config.sql.host);
					expect(config.sqlByService.payment.password).toBeDefined();
				}
			}
			// Least privilege: the payment database's address and login reach the pods of the payment service only.
			// The gateway's /api/health reports that database through payment's own `db:payment` check.
			if (!env.SERVICES.split(",").includes("payment")) expect([d.metadata.name, config.sqlByService.payment]).toEqual([d.metadata.name, undefined]);
		}
	});

	it("the payment database's variables and Secret are only on the pods running the payment service (booking)", () => {
		for (const d of deployments) {
			const c = container(d);
			const paymentVars = (c.env ?? []).filter(e => /_PAYMENT$/.test(e.name)).map(e => e.name);
			const paymentSecretRefs = [
				...(c.env ?? []).filter(e => e.valueFrom?.secretKeyRef?.name === "crp-payment-db").map(e => e.name),
				...(c.envFrom ?? []).filter(f => f.secretRef?.name === "crp-payment-db").map(() => "envFrom")
			];
			const runsPayment = c
				.env!.find(e => e.name === "SERVICES")!
				.value!.split(",")
				.includes("payment");
			if (!runsPayment) expect([d.metadata.name, paymentVars, paymentSecretRefs]).toEqual([d.metadata.name, [], []]);
			else if (name === "overlays/production") {
				expect(d.metadata.name).toBe("booking");
				expect(paymentVars.sort()).toEqual(["DATABASE_PASSWORD_PAYMENT", "DATABASE_URL_PAYMENT", "DATABASE_USER_PAYMENT"]);
			}
		}
	});

	it("HPA-managed Deployments have no spec.replicas, and each HPA's floor keeps a pod serving while its PDB lets one go", () => {
		const hpas = byKind<IHorizontalPodAutoscaler>(objs, "HorizontalPodAutoscaler");
		const managed = new Set(hpas.map(h => h.spec!.scaleTargetRef.name));
		expect([...managed].sort()).toEqual(["booking", "catalog", "gateway"]);
		for (const d of deployments) {
			// A count in the manifest would be re-applied by every `kubectl apply -k`, undoing the HPA's scale-out.
			if (managed.has(d.metadata.name)) expect([d.metadata.name, d.spec!.replicas]).toEqual([d.metadata.name, undefined]);
			else expect([d.metadata.name, d.spec!.replicas]).toEqual([d.metadata.name, 1]);
		}
		const pdbs = byKind<IPodDisruptionBudget>(objs, "PodDisruptionBudget");
		for (const h of hpas) {
			const target = deployments.find(d => d.metadata.name === h.spec!.scaleTargetRef.name)!;
			const pdb = pdbs.find(p => matches(p.spec!.selector!.matchLabels, target.spec!.template.metadata!.labels))!;
			const min = h.spec!.minReplicas ?? 1;
			const { maxUnavailable, minAvailable } = pdb.spec!;
			if (typeof maxUnavailable === "string" || typeof minAvailable === "string") throw new Error(`${pdb.metadata.name}: percentages not expected`);
			// Pods a drain may take at the HPA's floor (what the PDB allows), and the pods left serving meanwhile.
			const allowed = maxUnavailable !== undefined ? Math.min(maxUnavailable, min) : Math.max(min - minAvailable!, 0);
			const left = min - allowed;
			// Never a PDB that blocks a node drain for ever (minAvailable equal to the floor, maxUnavailable 0).
			expect([h.metadata.name, "drain allowed", allowed >= 1]).toEqual([h.metadata.name, "drain allowed", true]);
			// A drain leaves a pod serving: minReplicas >= 2 with maxUnavailable 1. Not for the small overlay, one pod
			// per group on a test cluster by design (its kustomization.yaml says so).
			if (name !== "overlays/small") expect([h.metadata.name, "pods left", left >= 1]).toEqual([h.metadata.name, "pods left", true]);
		}
		if (name === "overlays/production") {
			// The 100,000-user / 50,000-seat row of BENCHMARKS.md, Capacity planning.
			const floors = Object.fromEntries(hpas.map(h => [h.spec!.scaleTargetRef.name, h.spec!.minReplicas]));
			expect(floors).toEqual({ gateway: 11, catalog: 4, booking: 4 });
		}
	});

	it("with the Secret template's placeholders as they are, a node refuses to start", () => {
		const gateway = deployments.find(d => d.metadata.name === "gateway")!;
		expect(() => loadConfig(containerEnv(objs, container(gateway), "placeholders"))).toThrow(/JWT_SECRET must be at least 32/);
	});

	it("probes point at ports the container exposes; liveness never depends on Redis, NATS or MariaDB", () => {
		for (const d of deployments) {
			const c = container(d);
			for (const [kind, probe] of [
				["startup", c.startupProbe],
				["readiness", c.readinessProbe],
				["liveness", c.livenessProbe]
			] as const) {
				expect([d.metadata.name, kind, !!probe]).toEqual([d.metadata.name, kind, true]);
				const port = probe!.httpGet?.port ?? probe!.tcpSocket?.port;
				if (port !== undefined) expect([d.metadata.name, kind, portNumber(c, port)]).toEqual([d.metadata.name, kind, expect.any(Number)]);
				else {
					// The exec probe reads /metrics on METRICS_PORT, which must be the container's metrics port.
					const script = probe!.exec!.command!.join(" ");
					expect(script).toContain("process.env.METRICS_PORT");
					expect(Number(containerEnv(objs, c).METRICS_PORT)).toBe(portNumber(c, "metrics"));
				}
			}
			expect(c.livenessProbe!.httpGet?.path).not.toBe("/api/health");
			if (d.metadata.name === "gateway") {
				const r = c.readinessProbe!;
				expect(r.httpGet).toEqual({ path: "/api/health", port: "http" });
				expect(r.timeoutSeconds).toBeGreaterThan(2); // the health checks' own 2 s timeout
				// A Redis Cluster failover (15-20 s on a stock cluster) must not turn every gateway unready: at least
				// 20 s between the first and the last of the consecutive failures that make a pod unready (so
				// failureThreshold x periodSeconds, the usual measure, is above 20 s too).
				expect(((r.failureThreshold ?? 3) - 1) * (r.periodSeconds ?? 10)).toBeGreaterThanOrEqual(20);
				expect(r.successThreshold ?? 1).toBe(1);
			}
		}
	});

	it("the grace period covers the node's graceful stop (moleculer.config.ts) and the preStop pause", () => {
		const src = fs.readFileSync(path.join(ROOT, "moleculer.config.ts"), "utf8");
		const shutdownMs = Number(/shutdownTimeout:\s*([\d_]+)/.exec(src)![1].replace(/_/g, ""));
		for (const d of deployments) {
			const spec = d.spec!.template.spec!;
			const preStop = container(d).lifecycle?.preStop?.exec?.command;
			const pause = preStop?.[0] === "sleep" ? Number(preStop[1]) : 0;
			expect(spec.terminationGracePeriodSeconds! - pause - shutdownMs / 1000).toBeGreaterThanOrEqual(10);
		}
	});

	it("requests and limits are set, and the memory limit is above the V8 heap limit of NODE_OPTIONS", () => {
		for (const d of deployments) {
			const c = container(d);
			const env = containerEnv(objs, c);
			const oldSpace = Number(/--max-old-space-size=(\d+)/.exec(env.NODE_OPTIONS)![1]);
			const r = c.resources!;
			expect(r.requests?.cpu).toBeDefined();
			expect(r.limits?.cpu).toBeDefined();
			expect(mebibytes(r.limits!.memory)).toBeGreaterThanOrEqual(mebibytes(r.requests!.memory));
			// Old space + young generation + ~70 MB of code and buffers (BENCHMARKS.md, Capacity planning).
			expect(mebibytes(r.limits!.memory)).toBeGreaterThan(oldSpace + 70);
		}
	});

	it("runs as non-root with a read-only root filesystem and no capabilities", () => {
		for (const d of deployments) {
			const spec = d.spec!.template.spec!;
			expect(spec.securityContext?.runAsNonRoot).toBe(true);
			expect(spec.automountServiceAccountToken).toBe(false);
			for (const c of spec.containers) {
				expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
			}
		}
	});

	it("selectors match: Deployments their pods, the gateway Service its pods and ports, an HPA and a PDB per group", () => {
		for (const d of deployments) {
			expect(matches(d.spec!.selector.matchLabels, d.spec!.template.metadata!.labels)).toBe(true);
			const others = deployments.filter(o => o !== d);
			for (const o of others) expect(matches(d.spec!.selector.matchLabels, o.spec!.template.metadata!.labels)).toBe(false);
		}
		const podsOf = (selector: Record<string, string> | undefined) => deployments.filter(d => matches(selector, d.spec!.template.metadata!.labels));

		const services = byKind<IService>(objs, "Service");
		expect(services.map(s => s.metadata.name)).toEqual(["gateway"]);
		for (const s of services) {
			const [target] = podsOf(s.spec!.selector);
			expect(target?.metadata.name).toBe("gateway");
			for (const p of s.spec!.ports!) expect(portNumber(container(target), p.targetPort)).toBeDefined();
		}

		const hpas = byKind<IHorizontalPodAutoscaler>(objs, "HorizontalPodAutoscaler");
		expect(hpas.map(h => h.spec!.scaleTargetRef.name).sort()).toEqual(["booking", "catalog", "gateway"]);
		for (const h of hpas) {
			const target = deployments.find(d => d.spec && h.spec!.scaleTargetRef.kind === "Deployment" && d.metadata.name === h.spec!.scaleTargetRef.name);
			expect(target).toBeDefined();
			expect(h.spec!.minReplicas!).toBeLessThanOrEqual(h.spec!.maxReplicas);
			expect(h.spec!.metrics).toEqual([{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 60 } } }]);
			expect(container(target!).resources!.requests!.cpu).toBeDefined(); // utilization is relative to the request
		}

		const pdbs = byKind<IPodDisruptionBudget>(objs, "PodDisruptionBudget");
		expect(
			pdbs
				.map(p => podsOf(p.spec!.selector!.matchLabels).map(d => d.metadata.name))
				.flat()
				.sort()
		).toEqual(deployments.map(d => d.metadata.name).sort());
		for (const p of pdbs) expect(podsOf(p.spec!.selector!.matchLabels)).toHaveLength(1);

		for (const np of byKind<INetworkPolicy>(objs, "NetworkPolicy")) {
			const pods = podsOf(np.spec!.podSelector.matchLabels);
			expect(pods.length).toBeGreaterThan(0);
			for (const rule of np.spec!.ingress ?? []) {
				for (const p of rule.ports ?? [])
					for (const d of pods)
						expect([np.metadata.name, d.metadata.name, portNumber(container(d), p.port)]).toEqual([
							np.metadata.name,
							d.metadata.name,
							expect.any(Number)
						]);
			}
		}
	});

	it("every pod is spread over zones and nodes, and scraped on its metrics port", () => {
		for (const d of deployments) {
			const t = d.spec!.template;
			const keys = (t.spec!.topologySpreadConstraints ?? []).map(c => c.topologyKey).sort();
			expect(keys).toEqual(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
			for (const c of t.spec!.topologySpreadConstraints!) expect(matches(c.labelSelector!.matchLabels, t.metadata!.labels)).toBe(true);
			expect(Number(t.metadata!.annotations!["prometheus.io/port"])).toBe(portNumber(container(d), "metrics"));
		}
	});

	if (name === "overlays/production") {
		it("sets a registry image with a release tag (not the base's placeholder)", () => {
			for (const d of deployments) expect(container(d).image).toMatch(/^registry\.example\.com\/.+:\d+\.\d+\.\d+$/);
		});
	}
});

// ---------------------------------------------------------------------------------------------------------------
// The exec readiness probe of the nodes without HTTP, run for real

describe("deploy/k8s: the exec readiness probe's script", () => {
	// Every distinct exec readiness command of every rendered Deployment (the same script in all, today).
	const commands = new Map<string, string[]>();
	const withExec: string[] = [];
	for (const [name, objs] of rendered)
		for (const d of byKind<IDeployment>(objs, "Deployment")) {
			const cmd = d.spec!.template.spec!.containers[0].readinessProbe?.exec?.command;
			if (!cmd) continue;
			commands.set(JSON.stringify(cmd), cmd);
			withExec.push(`${name} ${d.metadata.name}`);
		}
	const scripts = [...commands.values()];

	/** Runs the probe's command as the kubelet would (its exit code decides), pointed at `port` by METRICS_PORT. */
	function runProbe(cmd: string[], port: number): Promise<number | null> {
		// `node` as in the image; here the node running this test.
		const [bin, ...args] = cmd;
		return new Promise((resolve, reject) => {
			const child = spawn(bin === "node" ? process.execPath : bin, args, {
				env: { PATH: process.env.PATH, METRICS_PORT: String(port) },
				stdio: "ignore"
			});
			const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
			child.on("error", reject);
			child.on("exit", code => {
				clearTimeout(timer);
				resolve(code);
			});
		});
	}

	/** A local /metrics server answering `body` (as Moleculer's Prometheus reporter does: text/plain, 200). */
	async function withMetricsServer<T>(body: string, fn: (port: number) => Promise<T>): Promise<T> {
		const server = http.createServer((req, res) => {
			if (req.url !== "/metrics") {
				res.writeHead(404).end();
				return;
			}
			res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }).end(body);
		});
		await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
		try {
			return await fn((server.address() as AddressInfo).port);
		} finally {
			await new Promise(resolve => server.close(resolve));
		}
	}

	// The lines as node_modules/moleculer/src/metrics/reporters/prometheus.js writes a gauge: `# HELP`, `# TYPE`,
	// then `name{labels} value`, labels being moleculer.config.ts' defaultLabels (namespace, nodeID).
	const labels = 'namespace="crp",nodeID="booking-7c9f8d6b5-x2kqz"';
	const sample = (started: number | undefined, connected: number | undefined) =>
		[
			"# HELP process_uptime Process uptime",
			"# TYPE process_uptime gauge",
			`process_uptime{${labels}} 42.17`,
			"",
			...(started === undefined
				? []
				: [
						"# HELP moleculer_broker_started Broker started",
						"# TYPE moleculer_broker_started gauge",
						`moleculer_broker_started{${labels}} ${started}`,
						""
					]),
			...(connected === undefined
				? []
				: [
						"# HELP moleculer_transit_connected Transit connected",
						"# TYPE moleculer_transit_connected gauge",
						`moleculer_transit_connected{${labels}} ${connected}`,
						""
					]),
			"# HELP moleculer_request_total Number of requests",
			"# TYPE moleculer_request_total counter",
			`moleculer_request_total{${labels},action="reservation.hold",service="reservation",caller="gateway-1"} 1807`,
			""
		].join("\n");

	it("finds the probe on catalog, booking and events of every render", () => {
		expect(withExec.sort()).toEqual(RENDERS.flatMap(([name]) => ["booking", "catalog", "events"].map(g => `${name} ${g}`)).sort());
		expect(scripts).toHaveLength(1);
	});

	it.each([
		{ label: "healthy: broker started, connected to NATS", body: sample(1, 1), expected: 0 },
		{ label: "services still starting (moleculer_broker_started 0)", body: sample(0, 1), expected: 1 },
		{ label: "not started yet (no moleculer_broker_started line)", body: sample(undefined, undefined), expected: 1 },
		{ label: "cut off from NATS (moleculer_transit_connected 0)", body: sample(1, 0), expected: 1 },
		{ label: "an empty answer", body: "", expected: 1 }
	])("$label: exits $expected", async ({ body, expected }) => {
		for (const cmd of scripts) {
			const code = await withMetricsServer(body, port => runProbe(cmd, port));
			expect(code).toBe(expected);
		}
	});

	it("fails when nothing listens on METRICS_PORT", async () => {
		// A port that was free a moment ago: bound, then closed.
		const port = await withMetricsServer("", async p => p);
		for (const cmd of scripts) expect(await runProbe(cmd, port)).not.toBe(0);
	});

	it("passes against a real Moleculer node's /metrics, and fails once it reports NATS lost", async () => {
		const broker = new ServiceBroker({
			namespace: "crp",
			nodeID: "booking-probe-test",
			transporter: "Fake",
			logger: false,
			metrics: {
				enabled: true,
				reporter: [{ type: "Prometheus", options: { port: 0, defaultLabels: () => ({ namespace: "crp", nodeID: "booking-probe-test" }) } }]
			}
		});
		const server = (broker.metrics as unknown as { reporter: { server: http.Server }[] }).reporter[0].server;
		try {
			await broker.start();
			if (!server.listening) await new Promise(resolve => server.once("listening", resolve));
			const port = (server.address() as AddressInfo).port;
			for (const cmd of scripts) expect(await runProbe(cmd, port)).toBe(0);
			// What transit.js records when the transporter disconnects.
			broker.metrics.set("moleculer.transit.connected", 0);
			for (const cmd of scripts) expect(await runProbe(cmd, port)).toBe(1);
		} finally {
			await broker.stop();
		}
	});
});
