/**
 * Test-only saga definitions and fast engine settings, shared by the in-process tests and the spawned nodes
 * (test/support/saga-services/saga). The participant is the fake service beside this file: each step's `plan`
 * (from the saga data, by step name, `<step>:undo` for its compensation) tells it how to misbehave.
 */
import { defineSaga, type StepDef } from "../../../sagas/types";
import type { SagaSettings } from "../../../services/saga/saga.service";

export interface FakePlan {
	/** Fail the first n calls under this key; -1: fail until `fake.heal`. */
	fail?: number;
	/** How to fail: a business rejection (409), a transient error (retryable 503) or a server bug (500). */
	error?: "reject" | "transient" | "server";
	/** After the `fail` failures, the next call rejects (a step that was in doubt, then said no). */
	thenReject?: boolean;
	/** First call only: apply the effect but answer after this long (past the step's timeout). */
	lateMs?: number;
	/** First call only: wait until `fake.open({key})` before doing anything. */
	gate?: boolean;
}

export interface FakeData {
	plan?: Record<string, FakePlan>;
}

const step = (name: string, opts: { compensate?: boolean; timeout?: number } = {}): StepDef<FakeData> => ({
	name,
	action: "fake.do",
	params: d => ({ step: name, plan: d.plan?.[name] }),
	...(opts.compensate === false ? {} : { compensate: { action: "fake.undo", params: (d: FakeData) => ({ step: name, plan: d.plan?.[`${name}:undo`] }) } }),
	retry: { attempts: 3, backoffMs: 20 },
	timeout: opts.timeout ?? 500
});

/** Four compensable steps a, b, c, d. */
export const TEST4 = defineSaga<FakeData>({
	type: "Test4",
	steps: [step("a"), step("b"), step("c"), step("d")],
	rejections: { FAKE_REJECTED: "the participant said no" },
	result: (_d, results) => ({ steps: Object.keys(results) })
});

/** Test4 with 10 s step timeouts: a gated call stays in flight (crash and lease tests). */
export const LONG4 = defineSaga<FakeData>({
	type: "Long4",
	steps: ["a", "b", "c", "d"].map(name => step(name, { timeout: 10_000 }))
});

/** a, b compensable; c and d retriable (past the point of no return): their failures never undo a and b. */
export const PIVOT = defineSaga<FakeData>({
	type: "Pivot",
	steps: [step("a"), step("b"), ...["c", "d"].map(name => ({ ...step(name, { compensate: false }), retriable: true }))],
	rejections: { FAKE_REJECTED: "the participant said no" }
});

/** The middle step has no compensation: it is skipped when undoing. */
export const MIXED = defineSaga<FakeData>({
	type: "Mixed",
	steps: [step("a"), step("b", { compensate: false }), step("c")],
	rejections: { FAKE_REJECTED: "the participant said no" }
});

/** Four steps that do nothing: the engine's own overhead (bench/quick-saga.ts). */
export const EMPTY4 = defineSaga<Record<string, never>>({
	type: "Empty4",
	steps: ["s1", "s2", "s3", "s4"].map(name => ({ name, action: "fake.noop", params: () => ({}) }))
});

export const TEST_DEFINITIONS = [TEST4, LONG4, PIVOT, MIXED, EMPTY4];

/** Short leases and scans so recovery happens within a test's patience. */
export const FAST_SETTINGS: Partial<SagaSettings> = {
	leaseMs: 1500,
	recoveryIntervalMs: 250,
	stepTimeoutMs: 500,
	maxBackoffMs: 200,
	compensationAttempts: 5,
	compensationBackoffMs: 20,
	waitPollMs: 50
};
