/*
 * The operator console (issue 19): a small single-page app over the public admin HTTP API, in plain JavaScript.
 *
 * Why no framework and no build step: the console is seven pages of tables and buttons; shipping it as three
 * static files keeps it working from `npm start` and from the Docker image with nothing to compile, adds no
 * dependency to the gateway, and lets the page run under a strict Content-Security-Policy (script and style from
 * this origin, nothing inline, requests to this origin only).
 *
 * Rules it keeps:
 * - It signs in through POST /api/auth/login and then calls only /api/admin/* (and the public catalog list) with
 *   `Authorization: Bearer`. The token lives in sessionStorage (gone with the tab), never in localStorage (it would outlive the tab).
 * - A user without the admin role is told so and sees nothing else; the token is dropped at once. The API answers
 *   403 to non-admins anyway: a 403 from any call also ends in the same "no access" view.
 * - Every value from the server reaches the page as text (textContent), never as HTML.
 */
(function () {
	"use strict";

	var TOKEN_KEY = "crp.console.token";
	var USER_KEY = "crp.console.user";
	var FIGURES_EVERY_MS = 3000;

	var $ = function (id) {
		return document.getElementById(id);
	};

	/** Builds an element; strings and numbers among the children become text nodes, never markup. */
	function el(tag, attrs) {
		var node = document.createElement(tag);
		if (attrs) {
			Object.keys(attrs).forEach(function (k) {
				var v = attrs[k];
				if (v === undefined || v === null || v === false) return;
				if (k === "text") node.textContent = String(v);
				else if (k === "class") node.className = v;
				else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
				else if (k === "dataset") Object.keys(v).forEach(d => (node.dataset[d] = String(v[d])));
				else if (v === true) node.setAttribute(k, "");
				else node.setAttribute(k, String(v));
			});
		}
		for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
		return node;
	}

	function append(node, child) {
		if (child === undefined || child === null || child === false) return;
		if (Array.isArray(child)) return child.forEach(c => append(node, c));
		node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
	}

	function clear(node) {
		while (node.firstChild) node.removeChild(node.firstChild);
		return node;
	}

	function badge(text, kind) {
		return el("span", { class: "badge " + (kind || text), text: text });
	}

	function fmtTime(iso) {
		if (!iso) return "-";
		var d = new Date(iso);
		if (isNaN(d.getTime())) return String(iso);
		return d
			.toISOString()
			.replace("T", " ")
			.replace(/\.\d+Z$/, "Z");
	}

	function fmtAge(iso) {
		if (!iso) return "";
		var s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
		if (!isFinite(s)) return "";
		if (s < 0) s = 0;
		if (s < 120) return s + " s ago";
		if (s < 7200) return Math.round(s / 60) + " min ago";
		if (s < 172800) return Math.round(s / 3600) + " h ago";
		return Math.round(s / 86400) + " d ago";
	}

	function fmtMs(ms) {
		if (ms === null || ms === undefined) return "-";
		if (ms < 1000) return Math.round(ms) + " ms";
		return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
	}

	function table(headers, rows) {
		return el(
			"table",
			null,
			el(
				"thead",
				null,
				el(
					"tr",
					null,
					headers.map(h => el("th", { text: h }))
				)
			),
			el("tbody", null, rows)
		);
	}

	// ---------------------------------------------------------------- session and HTTP

	var session = {
		token: function () {
			return sessionStorage.getItem(TOKEN_KEY);
		},
		user: function () {
			try {
				return JSON.parse(sessionStorage.getItem(USER_KEY) || "null");
			} catch (e) {
				return null;
			}
		},
		set: function (token, user) {
			sessionStorage.setItem(TOKEN_KEY, token);
			sessionStorage.setItem(USER_KEY, JSON.stringify({ id: user.id, email: user.email, role: user.role }));
		},
		clear: function () {
			sessionStorage.removeItem(TOKEN_KEY);
			sessionStorage.removeItem(USER_KEY);
		}
	};

	function ApiError(status, body) {
		this.status = status;
		this.body = body || {};
		this.type = (body && body.type) || "HTTP_" + status;
		this.message = (body && body.message) || "request failed (" + status + ")";
	}

	/** One call to the API; 401 signs out, 403 shows "no access". Answers the parsed body. */
	function api(method, path, body) {
		var headers = { accept: "application/json" };
		var token = session.token();
		if (token) headers.authorization = "Bearer " + token;
		if (body !== undefined) headers["content-type"] = "application/json";
		return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit" }).then(
			function (res) {
				return res.text().then(function (text) {
					var data = null;
					try {
						data = text ? JSON.parse(text) : null;
					} catch (e) {
						data = null;
					}
					if (res.ok) return data;
					var err = new ApiError(res.status, data);
					if (res.status === 401 && path !== "/api/auth/login") {
						signOut("Your session ended; sign in again.");
					} else if (res.status === 403 && path.indexOf("/api/admin/") === 0) {
						showDenied();
					}
					throw err;
				});
			}
		);
	}

	/** A readable line for an API error: its type, message and the fields a validation error names. */
	function describe(err) {
		if (!(err instanceof ApiError)) return String((err && err.message) || err);
		var line = err.type + ": " + err.message;
		if (err.type === "VALIDATION_ERROR" && Array.isArray(err.body.data)) {
			line +=
				" (" +
				err.body.data
					.map(function (d) {
						return (d.field || "?") + ": " + (d.message || d.type);
					})
					.join("; ") +
				")";
		}
		return line;
	}

	function notify(text, isError) {
		var n = $("notice");
		n.textContent = text || "";
		n.className = "notice" + (isError ? " error" : "");
	}

	// ---------------------------------------------------------------- views: sign-in, no access, app

	var stopTimers = function () {};

	function showSignIn(message) {
		stopTimers();
		$("app").hidden = true;
		$("denied").hidden = true;
		$("signin").hidden = false;
		$("signout").hidden = true;
		$("whoami").textContent = "";
		clear($("page"));
		$("signin-error").textContent = message || "";
	}

	function showDenied() {
		stopTimers();
		var user = session.user();
		session.clear();
		clear($("page"));
		$("app").hidden = true;
		$("signin").hidden = true;
		$("signout").hidden = true;
		$("whoami").textContent = "";
		$("denied").hidden = false;
		$("denied-text").textContent =
			(user && user.email ? user.email + " has" : "This account has") + " no access to the operator console: it needs the admin role.";
	}

	function showApp() {
		var user = session.user();
		$("signin").hidden = true;
		$("denied").hidden = true;
		$("app").hidden = false;
		$("signout").hidden = false;
		$("whoami").textContent = user ? user.email + " (admin)" : "";
		route();
	}

	function signOut(message) {
		session.clear();
		showSignIn(message);
	}

	$("signin-form").addEventListener("submit", function (ev) {
		ev.preventDefault();
		var email = $("signin-email").value.trim();
		var password = $("signin-password").value;
		$("signin-error").textContent = "";
		$("signin-submit").disabled = true;
		api("POST", "/api/auth/login", { email: email, password: password })
			.then(function (res) {
				$("signin-password").value = "";
				if (!res || !res.user || res.user.role !== "admin") {
					// Not an admin: keep nothing of the session and show nothing but the refusal.
					session.set(res.accessToken, res.user || {});
					showDenied();
					return;
				}
				session.set(res.accessToken, res.user);
				showApp();
			})
			.catch(function (err) {
				$("signin-error").textContent = err.status === 401 ? "Wrong email or password." : describe(err);
			})
			.then(function () {
				$("signin-submit").disabled = false;
			});
	});
	$("signout").addEventListener("click", function () {
		signOut("");
	});
	$("denied-signout").addEventListener("click", function () {
		signOut("");
	});

	// ---------------------------------------------------------------- routing

	var PAGES = {
		sagas: pageSagas,
		saga: pageSaga,
		"dead-letters": pageDeadLetters,
		"event-dead-letters": pageEventDeadLetters,
		consistency: pageConsistency,
		queues: pageQueues,
		nodes: pageNodes,
		figures: pageFigures
	};

	function parseHash() {
		var raw = (location.hash || "#sagas").slice(1);
		var q = raw.indexOf("?");
		var path = q < 0 ? raw : raw.slice(0, q);
		var params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
		// A hand-typed hash with a stray "%" must not stop the page: such a part is taken as it is.
		var parts = path.split("/").map(function (part) {
			try {
				return decodeURIComponent(part);
			} catch (e) {
				return part;
			}
		});
		return { name: parts[0] || "sagas", arg: parts[1], params: params };
	}

	function route() {
		if (!session.token() || $("app").hidden) return;
		stopTimers();
		stopTimers = function () {};
		var r = parseHash();
		var page = PAGES[r.name] ? r.name : "sagas";
		var tab = page === "saga" ? "sagas" : page;
		Array.prototype.forEach.call(document.querySelectorAll(".tabs a"), function (a) {
			a.classList.toggle("active", a.dataset.tab === tab);
		});
		notify("");
		var root = clear($("page"));
		root.dataset.page = page;
		PAGES[page](root, r);
	}

	window.addEventListener("hashchange", route);

	/** Runs `fn` now and every `ms` while this page is shown; the next route() stops it. */
	function every(ms, fn) {
		var live = true;
		var timer = null;
		var tick = function () {
			if (!live) return;
			Promise.resolve(fn()).then(
				function () {
					if (live) timer = setTimeout(tick, ms);
				},
				function () {
					if (live) timer = setTimeout(tick, ms);
				}
			);
		};
		tick();
		stopTimers = function () {
			live = false;
			if (timer) clearTimeout(timer);
		};
	}

	function loading(root) {
		return root.appendChild(el("p", { class: "muted", text: "Loading..." }));
	}

	function failed(root, err) {
		notify(describe(err), true);
		root.appendChild(el("p", { class: "error", text: describe(err) }));
	}

	// ---------------------------------------------------------------- 1. sagas

	var SAGA_STATUSES = ["RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED"];

	function pageSagas(root, r) {
		var p = r.params;
		var status = el(
			"select",
			{ id: "saga-status", name: "status" },
			el("option", { value: "", text: "any" }),
			SAGA_STATUSES.map(s => el("option", { value: s, text: s, selected: p.get("status") === s }))
		);
		var type = el("input", { id: "saga-type", name: "type", placeholder: "e.g. ConfirmReservation", maxlength: 64, value: p.get("type") || "" });
		var older = el("input", { id: "saga-older", name: "olderThanSec", type: "number", min: 0, placeholder: "seconds", value: p.get("olderThanSec") || "" });
		var since = el("input", { id: "saga-since", name: "since", placeholder: "2026-01-01T00:00:00Z", maxlength: 40, value: p.get("since") || "" });
		var pageNo = Number(p.get("page") || "1") || 1;
		var form = el(
			"form",
			{ class: "toolbar inline", id: "saga-filters" },
			el("label", null, "Status ", status),
			el("label", null, "Type ", type),
			el("label", null, "Created more than ", older, " s ago"),
			el("label", null, "Created since ", since),
			el("button", { type: "submit", text: "Filter" })
		);
		form.addEventListener("submit", function (ev) {
			ev.preventDefault();
			var q = new URLSearchParams();
			if (status.value) q.set("status", status.value);
			if (type.value.trim()) q.set("type", type.value.trim());
			if (older.value !== "") q.set("olderThanSec", older.value);
			if (since.value.trim()) q.set("since", since.value.trim());
			var next = "#sagas" + (q.toString() ? "?" + q.toString() : "");
			if (location.hash === next) route();
			else location.hash = next;
		});
		root.appendChild(el("h2", { text: "Sagas" }));
		root.appendChild(form);
		var out = root.appendChild(el("div", { id: "saga-list" }));
		loading(out);
		var q = new URLSearchParams(p);
		q.set("page", String(pageNo));
		q.set("pageSize", "50");
		api("GET", "/api/admin/sagas?" + q.toString())
			.then(function (res) {
				clear(out);
				out.appendChild(
					el("p", { class: "muted", text: res.total + " saga(s); page " + res.page + " of " + Math.max(1, Math.ceil(res.total / res.pageSize)) })
				);
				out.appendChild(
					table(
						["Id", "Type", "Status", "Step", "Created", "Updated"],
						res.rows.map(function (s) {
							return el(
								"tr",
								{ dataset: { id: s.id, status: s.status } },
								el("td", { class: "mono" }, el("a", { href: "#saga/" + encodeURIComponent(s.id), text: s.id })),
								el("td", { text: s.type }),
								el("td", null, badge(s.status)),
								el("td", { text: s.step || "-" }),
								el("td", { text: fmtTime(s.createdAt), title: fmtAge(s.createdAt) }),
								el("td", { text: fmtAge(s.updatedAt) })
							);
						})
					)
				);
				var pager = el("p", { class: "toolbar" });
				var go = function (n) {
					var qq = new URLSearchParams(p);
					qq.set("page", String(n));
					location.hash = "#sagas?" + qq.toString();
				};
				if (pageNo > 1) pager.appendChild(el("button", { class: "secondary", type: "button", text: "Previous", onclick: () => go(pageNo - 1) }));
				if (pageNo * res.pageSize < res.total)
					pager.appendChild(el("button", { class: "secondary", type: "button", text: "Next", onclick: () => go(pageNo + 1) }));
				out.appendChild(pager);
			})
			.catch(function (err) {
				clear(out);
				failed(out, err);
			});
	}

	function pageSaga(root, r) {
		var id = r.arg;
		root.appendChild(el("p", null, el("a", { href: "#sagas", text: "All sagas" })));
		var box = root.appendChild(el("div", { id: "saga-detail" }));
		var load = function () {
			return api("GET", "/api/admin/sagas/" + encodeURIComponent(id)).then(function (saga) {
				renderSaga(box, saga, load);
				return saga;
			});
		};
		loading(box);
		load().catch(function (err) {
			clear(box);
			failed(box, err);
		});
	}

	function renderSaga(box, saga, reload) {
		clear(box);
		box.dataset.status = saga.status;
		box.appendChild(el("h2", null, "Saga ", el("span", { class: "mono", text: saga.id }), " ", badge(saga.status)));
		var retry = el("button", { id: "saga-retry", type: "button", text: "Retry", disabled: saga.status !== "FAILED" });
		retry.addEventListener("click", function () {
			retry.disabled = true;
			api("POST", "/api/admin/sagas/" + encodeURIComponent(saga.id) + "/retry")
				.then(function (res) {
					notify("Retried: the saga is " + res.status + " again.");
					// Follow it until it settles (or 20 s pass).
					var until = Date.now() + 20000;
					var poll = function () {
						return reload().then(function (s) {
							if ((s.status === "RUNNING" || s.status === "COMPENSATING") && Date.now() < until)
								return new Promise(r => setTimeout(r, 700)).then(poll);
						});
					};
					return poll();
				})
				.catch(function (err) {
					notify(describe(err), true);
					retry.disabled = saga.status !== "FAILED";
				});
		});
		box.appendChild(
			el(
				"p",
				{ class: "toolbar" },
				retry,
				el("span", { class: "muted", text: "Resumes a FAILED saga where it stopped, with the same idempotency keys." })
			)
		);
		var kv = el("dl", { class: "kv" });
		var add = function (k, v) {
			kv.appendChild(el("dt", { text: k }));
			kv.appendChild(el("dd", { class: "mono", text: v === undefined || v === null || v === "" ? "-" : v }));
		};
		add("Type", saga.type);
		add("Key", saga.key);
		add("Step", saga.stepName === null ? "-" : saga.stepName + " (#" + saga.step + ")");
		add("Attempts", saga.attempts);
		add("Created", fmtTime(saga.createdAt));
		add("Updated", fmtTime(saga.updatedAt) + " (" + fmtAge(saga.updatedAt) + ")");
		add("Lease", saga.leaseOwner ? saga.leaseOwner + " until " + fmtTime(saga.leaseExpiresAt ? new Date(saga.leaseExpiresAt).toISOString() : null) : "-");
		if (saga.error) add("Error", saga.error.type + " at " + saga.error.phase + " " + saga.error.step + ": " + saga.error.message);
		box.appendChild(el("div", { class: "card" }, kv));

		box.appendChild(el("h3", { text: "Journal" }));
		var list = el("ol", { class: "timeline", id: "saga-timeline" });
		(saga.journal || []).forEach(function (j) {
			var err = j.error ? (j.error.type || "ERROR") + (j.error.message ? ": " + j.error.message : "") : null;
			list.appendChild(
				el(
					"li",
					{ class: j.status, dataset: { step: j.step, phase: j.phase, status: j.status } },
					el(
						"div",
						null,
						el("strong", { text: (j.phase === "compensate" ? "undo " : "") + j.step }),
						" ",
						badge(j.status),
						" ",
						el("span", { class: "muted", text: j.phase })
					),
					el(
						"div",
						{ class: "muted" },
						"attempts " +
							j.attempts +
							" · duration " +
							fmtMs(j.durationMs) +
							" · started " +
							fmtTime(j.startedAt) +
							(j.finishedAt ? " · finished " + fmtTime(j.finishedAt) : " · running")
					),
					err ? el("div", { class: "error mono", text: err }) : null
				)
			);
		});
		if (!saga.journal || saga.journal.length === 0) list.appendChild(el("li", { class: "muted", text: "No step journalled yet." }));
		box.appendChild(list);

		if (saga.deadLetters && saga.deadLetters.length) {
			box.appendChild(el("h3", { text: "Dead letters" }));
			box.appendChild(
				table(
					["Id", "Status", "Step", "Error", "Created", "Note"],
					saga.deadLetters.map(d =>
						el(
							"tr",
							null,
							el("td", { class: "mono", text: d.id }),
							el("td", null, badge(d.status)),
							el("td", { text: d.phase + " " + d.step }),
							el("td", { text: d.error ? d.error.type || JSON.stringify(d.error) : "-" }),
							el("td", { text: fmtTime(d.createdAt) }),
							el("td", { text: d.note || "" })
						)
					)
				)
			);
		}
		if (saga.data !== undefined) {
			box.appendChild(el("h3", { text: "Data and results" }));
			box.appendChild(el("pre", { text: JSON.stringify({ data: saga.data, results: saga.results, result: saga.result }, null, 2) }));
		}
	}

	// ---------------------------------------------------------------- 2. saga dead letters

	function pageDeadLetters(root, r) {
		var status = r.params.has("status") ? r.params.get("status") : "OPEN";
		var select = el(
			"select",
			{ id: "dl-status" },
			["OPEN", "RETRIED", "RESOLVED", ""].map(s => el("option", { value: s, text: s || "any", selected: s === status }))
		);
		select.addEventListener("change", function () {
			location.hash = "#dead-letters?status=" + encodeURIComponent(select.value);
		});
		root.appendChild(el("h2", { text: "Saga dead letters" }));
		root.appendChild(
			el("p", {
				class: "muted",
				text: "Sagas parked FAILED, waiting for an operator: retry once the fault has passed, or resolve with a note after settling it by hand."
			})
		);
		root.appendChild(el("div", { class: "toolbar inline" }, el("label", null, "Status ", select)));
		var out = root.appendChild(el("div", { id: "dl-list" }));
		loading(out);
		api("GET", "/api/admin/dead-letters?pageSize=100" + (status ? "&status=" + encodeURIComponent(status) : ""))
			.then(function (res) {
				clear(out);
				out.appendChild(el("p", { class: "muted", text: res.total + " dead letter(s)" }));
				out.appendChild(
					table(
						["Id", "Saga", "Type", "Where", "Error", "Status", "Created", "Action"],
						res.rows.map(function (d) {
							var note = el("input", { placeholder: "note", maxlength: 500, class: "dl-note" });
							var open = d.status === "OPEN";
							var act = function (what) {
								var body = what === "resolve" ? { note: note.value.trim() || undefined } : undefined;
								api("POST", "/api/admin/dead-letters/" + encodeURIComponent(d.id) + "/" + what, body || (what === "resolve" ? {} : undefined))
									.then(function () {
										route();
										notify("Dead letter " + d.id + (what === "retry" ? " retried." : " resolved."));
									})
									.catch(err => notify(describe(err), true));
							};
							return el(
								"tr",
								{ dataset: { id: d.id, sagaId: d.sagaId } },
								el("td", { class: "mono", text: d.id }),
								el("td", { class: "mono" }, el("a", { href: "#saga/" + encodeURIComponent(d.sagaId), text: d.sagaId })),
								el("td", { text: d.sagaType }),
								el("td", { text: d.phase + " " + d.step }),
								el("td", { class: "mono", text: d.error ? (d.error.type || "") + (d.error.message ? ": " + d.error.message : "") : "-" }),
								el("td", null, badge(d.status), d.note ? el("div", { class: "muted", text: d.note }) : null),
								el("td", { text: fmtTime(d.createdAt) }),
								el(
									"td",
									null,
									open
										? [
												el("button", { type: "button", class: "dl-retry", text: "Retry", onclick: () => act("retry") }),
												" ",
												note,
												" ",
												el("button", { type: "button", class: "secondary dl-resolve", text: "Resolve", onclick: () => act("resolve") })
											]
										: "-"
								)
							);
						})
					)
				);
			})
			.catch(function (err) {
				clear(out);
				failed(out, err);
			});
	}

	// ---------------------------------------------------------------- 3. event dead letters

	function pageEventDeadLetters(root) {
		root.appendChild(el("h2", { text: "Event dead letters" }));
		root.appendChild(
			el("p", {
				class: "muted",
				text: "Durable events a consumer group gave up on. A replay sends the event back to that group only; its dedupe applies it at most once."
			})
		);
		var out = root.appendChild(el("div", { id: "edl-list" }));
		loading(out);
		api("GET", "/api/admin/event-dead-letters?limit=500")
			.then(function (letters) {
				clear(out);
				var kinds = {};
				letters.forEach(l => (kinds[l.event.type] = (kinds[l.event.type] || 0) + 1));
				var kind = el(
					"select",
					{ id: "edl-kind" },
					Object.keys(kinds)
						.sort()
						.map(k => el("option", { value: k, text: k + " (" + kinds[k] + ")" }))
				);
				var all = el("button", { id: "edl-replay-kind", type: "button", text: "Replay all of this kind", disabled: letters.length === 0 });
				all.addEventListener("click", function () {
					all.disabled = true;
					api("POST", "/api/admin/event-dead-letters/replay", { eventType: kind.value })
						.then(function (res) {
							route();
							notify("Replayed " + res.replayed + " dead letter(s) of " + res.eventType + ".");
						})
						.catch(err => notify(describe(err), true));
				});
				out.appendChild(el("div", { class: "toolbar inline" }, el("label", null, "Event type ", kind), all));
				out.appendChild(
					el("p", { class: "muted", text: letters.length + " dead letter(s)" + (letters.length >= 500 ? " (the oldest 500 shown)" : "") })
				);
				out.appendChild(
					table(
						["Id", "Group", "Event", "Aggregate", "Attempts", "Failed", "Error", "Action"],
						letters.map(function (l) {
							var payload = el("pre", { class: "edl-payload", hidden: true, text: JSON.stringify(l.event, null, 2) });
							var replay = el("button", { type: "button", class: "edl-replay", text: "Replay" });
							replay.addEventListener("click", function () {
								replay.disabled = true;
								api("POST", "/api/admin/event-dead-letters/" + encodeURIComponent(l.id) + "/replay")
									.then(function () {
										route();
										notify("Replayed dead letter " + l.id + " (event " + l.event.id + ") to " + l.group + ".");
									})
									.catch(function (err) {
										replay.disabled = false;
										notify(describe(err), true);
									});
							});
							return el(
								"tr",
								{ dataset: { id: l.id, eventId: l.event.id, eventType: l.event.type } },
								el("td", { class: "mono", text: l.id }),
								el("td", { text: l.group }),
								el("td", null, el("div", { text: l.event.type }), el("div", { class: "mono muted", text: l.event.id })),
								el("td", { class: "mono", text: l.event.aggregateType + " " + l.event.aggregateId + " v" + l.event.version }),
								el("td", { class: "num", text: l.attempts + (l.redrives ? " (+" + l.redrives + " redrives)" : "") }),
								el("td", { text: fmtTime(l.failedAt) }),
								el("td", { class: "mono", text: (l.invalid ? "[invalid] " : "") + l.error }),
								el(
									"td",
									null,
									replay,
									" ",
									el("button", {
										type: "button",
										class: "secondary edl-inspect",
										text: "Payload",
										onclick: function () {
											payload.hidden = !payload.hidden;
										}
									}),
									payload
								)
							);
						})
					)
				);
			})
			.catch(function (err) {
				clear(out);
				failed(out, err);
			});
	}

	// ---------------------------------------------------------------- 4. consistency

	var REPAIRS = [
		{ check: "ranking", what: "Rebuild the ranking from the reservations' truth (answers the ranking check run again)." },
		{ check: "holds", what: "Release orphan holds: seat holds whose owner is no live reservation (runs a full check first)." }
	];

	function pageConsistency(root) {
		root.appendChild(el("h2", { text: "Consistency" }));
		root.appendChild(
			el("p", {
				class: "muted",
				text: "Reads every context through its own actions and names what disagrees: seats, money, holds, sagas, outbox, ranking."
			})
		);
		var run = el("button", { id: "consistency-run", type: "button", text: "Run the check" });
		var out = el("div", { id: "consistency-report" });
		run.addEventListener("click", function () {
			run.disabled = true;
			clear(out);
			loading(out);
			api("GET", "/api/admin/consistency")
				.then(report => renderReport(out, report))
				.catch(function (err) {
					clear(out);
					failed(out, err);
				})
				.then(function () {
					run.disabled = false;
				});
		});
		root.appendChild(el("p", { class: "toolbar" }, run));
		root.appendChild(out);
		root.appendChild(el("h3", { text: "Repairs" }));
		var repairOut = el("pre", { id: "repair-result", hidden: true });
		REPAIRS.forEach(function (r) {
			var b = el("button", { type: "button", class: "secondary", dataset: { repair: r.check }, text: "Repair " + r.check });
			b.addEventListener("click", function () {
				b.disabled = true;
				api("POST", "/api/admin/consistency/repair", { check: r.check })
					.then(function (res) {
						repairOut.hidden = false;
						repairOut.textContent = JSON.stringify(res, null, 2);
						notify("Repair " + r.check + " done.");
					})
					.catch(err => notify(describe(err), true))
					.then(function () {
						b.disabled = false;
					});
			});
			root.appendChild(el("p", null, b, " ", el("span", { class: "muted", text: r.what })));
		});
		root.appendChild(repairOut);
	}

	function renderReport(out, report) {
		clear(out);
		out.appendChild(
			el(
				"p",
				null,
				"Overall ",
				badge(report.status || (report.ok ? "ok" : "drift")),
				" checked " + fmtTime(report.checkedAt) + (report.scope && report.scope.full ? " (full)" : "")
			)
		);
		report.checks.forEach(function (c) {
			var card = el("div", { class: "card check", dataset: { check: c.name, status: c.status || (c.ok ? "ok" : "drift") } });
			card.appendChild(el("h3", null, c.name + " ", badge(c.status || (c.ok ? "ok" : "drift"))));
			var details = c.details || {};
			var any = false;
			Object.keys(details).forEach(function (k) {
				var v = details[k];
				if (Array.isArray(v)) {
					if (v.length === 0) return;
					any = true;
					card.appendChild(el("div", { class: "finding" }, el("strong", { text: k + " (" + v.length + ")" })));
					var ul = el("ul", { class: "mono" });
					v.slice(0, 200).forEach(item => ul.appendChild(el("li", { text: typeof item === "object" ? JSON.stringify(item) : String(item) })));
					if (v.length > 200) ul.appendChild(el("li", { class: "muted", text: "... and " + (v.length - 200) + " more" }));
					card.appendChild(ul);
				} else if (v !== null && typeof v === "object") {
					card.appendChild(el("div", { class: "finding" }, el("strong", { text: k }), el("pre", { text: JSON.stringify(v, null, 2) })));
				} else if (v !== undefined) {
					card.appendChild(el("div", { class: "finding" }, el("strong", { text: k + ": " }), el("span", { class: "mono", text: String(v) })));
				}
			});
			if (!any && (c.ok || c.status === "ok")) card.appendChild(el("p", { class: "muted", text: "Nothing found." }));
			out.appendChild(card);
		});
	}

	// ---------------------------------------------------------------- 5. waiting rooms

	function pageQueues(root) {
		root.appendChild(el("h2", { text: "Waiting rooms" }));
		var refresh = el("button", { type: "button", class: "secondary", text: "Refresh", onclick: () => route() });
		root.appendChild(el("p", { class: "toolbar" }, refresh));
		var out = root.appendChild(el("div", { id: "queues" }));
		loading(out);
		api("GET", "/api/concerts?pageSize=100")
			.then(function (list) {
				return Promise.all(
					list.rows.map(function (c) {
						return api("GET", "/api/admin/queues/" + encodeURIComponent(c.id)).then(
							q => ({ concert: c, queue: q }),
							err => ({ concert: c, error: err })
						);
					})
				).then(function (rows) {
					clear(out);
					out.appendChild(
						el("p", {
							class: "muted",
							text: list.total + " concert(s)" + (list.total > list.rows.length ? " (first " + list.rows.length + " shown)" : "")
						})
					);
					out.appendChild(
						table(
							["Concert", "State", "Waiting", "Active", "Admitted / min", "Admitted total", "Estimated wait"],
							rows.map(function (r) {
								if (r.error)
									return el(
										"tr",
										null,
										el("td", { text: r.concert.title }),
										el("td", { class: "error", colspan: 6, text: describe(r.error) })
									);
								var q = r.queue;
								var wait =
									q.waiting === 0
										? "none"
										: q.admittedPerMinute > 0
											? "~" + fmtMs((q.waiting / q.admittedPerMinute) * 60000)
											: "unknown (no admission in the last minute)";
								return el(
									"tr",
									{ dataset: { id: r.concert.id } },
									el("td", null, el("div", { text: r.concert.title }), el("div", { class: "mono muted", text: r.concert.id })),
									el("td", null, badge(q.state, q.state === "OPEN" ? "OPEN-room" : q.state)),
									el("td", { class: "num", text: q.waiting }),
									el("td", { class: "num", text: q.active + " / " + q.maxActive }),
									el("td", { class: "num", text: q.admittedPerMinute }),
									el("td", { class: "num", text: q.admittedTotal }),
									el("td", { text: wait })
								);
							})
						)
					);
				});
			})
			.catch(function (err) {
				clear(out);
				failed(out, err);
			});
	}

	// ---------------------------------------------------------------- 6. nodes

	function pageNodes(root) {
		root.appendChild(el("h2", { text: "Nodes and services" }));
		var out = root.appendChild(el("div", { id: "nodes" }));
		loading(out);
		api("GET", "/api/admin/nodes")
			.then(function (res) {
				clear(out);
				out.appendChild(el("p", { class: "muted", text: res.available + " of " + res.total + " node(s) available" }));
				out.appendChild(
					table(
						["Node", "State", "Host", "CPU", "Last heartbeat", "Services"],
						res.nodes.map(n =>
							el(
								"tr",
								{ dataset: { id: n.id } },
								el("td", { class: "mono", text: n.id + (n.local ? " (this gateway)" : "") }),
								el("td", null, badge(n.available ? "up" : "down")),
								el("td", { text: n.hostname || "-" }),
								el("td", { class: "num", text: n.cpu === null ? "-" : n.cpu + " %" }),
								el("td", { text: n.lastHeartbeatAt ? fmtAge(n.lastHeartbeatAt) : n.local ? "-" : "none" }),
								el("td", { text: n.services.join(", ") })
							)
						)
					)
				);
			})
			.catch(function (err) {
				clear(out);
				failed(out, err);
			});
	}

	// ---------------------------------------------------------------- 7. live figures

	function pageFigures(root) {
		root.appendChild(el("h2", { text: "Live figures" }));
		var stamp = root.appendChild(el("p", { class: "muted", id: "figures-at", text: "Loading..." }));
		var grid = root.appendChild(el("div", { class: "figures", id: "figures" }));
		var figure = function (key, label, value, hint) {
			return el(
				"div",
				{ class: "figure", dataset: { figure: key } },
				el("div", { class: "value", text: value }),
				el("div", { class: "label", text: label }),
				hint ? el("div", { class: "muted", text: hint }) : null
			);
		};
		every(FIGURES_EVERY_MS, function () {
			return api("GET", "/api/admin/figures")
				.then(function (f) {
					clear(grid);
					var s = f.sagas;
					var o = s ? s.outcomes : {};
					grid.appendChild(
						figure(
							"bookingsPerSec",
							"bookings / s",
							s ? String(s.bookingsPerSec) : "-",
							s ? s.bookings + " in the last " + f.windowSec + " s" : "saga service unavailable"
						)
					);
					grid.appendChild(figure("completed", "sagas completed", s ? String(o.COMPLETED) : "-", "created in the last " + f.windowSec + " s"));
					grid.appendChild(figure("compensated", "sagas compensated", s ? String(o.COMPENSATED) : "-"));
					grid.appendChild(figure("failed", "sagas failed", s ? String(o.FAILED) : "-"));
					grid.appendChild(figure("running", "sagas running", s ? String((o.RUNNING || 0) + (o.COMPENSATING || 0)) : "-"));
					grid.appendChild(
						figure(
							"paymentP99",
							"payment p99",
							s ? fmtMs(s.payment.p99Ms) : "-",
							s ? "p50 " + fmtMs(s.payment.p50Ms) + " over " + s.payment.samples + " call(s)" : null
						)
					);
					grid.appendChild(
						figure(
							"outboxAge",
							"oldest unpublished event",
							f.outbox ? fmtMs(f.outbox.oldestAgeMs) : "-",
							f.outbox ? f.outbox.pending + " waiting in the outboxes" : "unavailable"
						)
					);
					grid.appendChild(figure("sagaDeadLetters", "open saga dead letters", f.deadLetters.sagas === null ? "-" : String(f.deadLetters.sagas)));
					grid.appendChild(figure("eventDeadLetters", "event dead letters", f.deadLetters.events === null ? "-" : String(f.deadLetters.events)));
					stamp.textContent =
						"Updated " +
						fmtTime(f.at) +
						", every " +
						FIGURES_EVERY_MS / 1000 +
						" s while this page is open." +
						(f.unavailable.length ? " Unavailable: " + f.unavailable.join(", ") : "");
				})
				.catch(function (err) {
					stamp.textContent = "Could not refresh: " + describe(err);
				});
		});
	}

	// ---------------------------------------------------------------- start

	if (session.token()) {
		var u = session.user();
		if (u && u.role === "admin") showApp();
		else showDenied();
	} else showSignIn("");
})();
