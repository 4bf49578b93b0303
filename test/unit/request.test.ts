/** The shared request rules (lib/request.ts): the signed-in caller, the saga of a step, and paging. */
import type { Context } from "moleculer";
import { pageWindow, sagaIdOf, signedInUser, type RequestMeta } from "../../lib/request";

const ctxWith = (meta: RequestMeta) => ({ meta }) as unknown as Context<unknown, RequestMeta>;

describe("request rules", () => {
	it("when no one is signed in, then signedInUser refuses with 401 UNAUTHORIZED; when someone is, it is them", () => {
		expect(() => signedInUser(ctxWith({}))).toThrow(expect.objectContaining({ code: 401, type: "UNAUTHORIZED" }));
		expect(() => signedInUser(ctxWith({ user: null }))).toThrow(expect.objectContaining({ code: 401 }));
		const user = { id: "u1", email: "a@example.com", role: "user" as const };
		expect(signedInUser(ctxWith({ user }))).toBe(user);
	});

	it("when a step is called outside a saga, then sagaIdOf refuses with 400 SAGA_REQUIRED", () => {
		expect(() => sagaIdOf(ctxWith({}))).toThrow(expect.objectContaining({ code: 400, type: "SAGA_REQUIRED" }));
		expect(sagaIdOf(ctxWith({ sagaId: "s1" }))).toBe("s1");
	});

	it("when a page is asked for, then its window follows page and pageSize, defaulting to the first 20", () => {
		expect(pageWindow({})).toEqual({ page: 1, pageSize: 20, offset: 0, limit: 20 });
		expect(pageWindow({ page: 3, pageSize: 10 })).toEqual({ page: 3, pageSize: 10, offset: 20, limit: 10 });
	});
});
