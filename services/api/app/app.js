/*
 * The fans' booking page (issue 20): a small single-page app over the public HTTP API (docs/API.md), in plain
 * JavaScript.
 *
 * Why no framework and no build step: like the operator console (services/api/console/console.js), the page is
 * three static files the gateway serves as they are, from `npm start` and from the Docker image, with nothing to
 * compile and no dependency added; and it runs under a strict Content-Security-Policy (script and style from this
 * origin, nothing inline, fetch and EventSource to this origin only). Hash routes (#/concerts, #/seats/...) need
 * no server routes beyond `/`.
 *
 * Rules it keeps:
 * - It uses only /api. The bearer token from POST /api/auth/login lives in sessionStorage (gone with the tab).
 * - Every value from the server reaches the page as text (textContent), never as HTML.
 * - Money-moving requests carry an Idempotency-Key made once per attempt and kept (in sessionStorage) until the
 *   attempt has a definite answer: a double click, a retry after a lost answer or a reload during payment reuse it,
 *   so nothing is ever paid, charged or refunded twice. The buttons are disabled while their request is in flight.
 * - Errors are told in a fan's words, chosen by the error's `type`, in a role=alert region.
 * - Seats are real buttons with an accessible name ("A-3, available, 300 points"); their state shows as a symbol
 *   and a pattern, not only as a colour. The seat map follows the live seat feed
 *   (EventSource /api/schedules/:id/seats/events, `event: seats`) and polls GET /api/schedules/:id/seats every 2 s
 *   when the feed is missing or fails.
 */
(function () {
	"use strict";

	var K = {
		token: "crp.app.token",
		user: "crp.app.user",
		queue: "crp.app.queue.", // + concertId: the waiting-room token
		pay: "crp.app.pay.", // + reservationId: the Idempotency-Key of the pay attempt in flight
		cancel: "crp.app.cancel.", // + reservationId
		charge: "crp.app.charge" // the Idempotency-Key of the top-up in flight
	};
	var QUEUE_POLL_MS = 2000;
	var SEATS_POLL_MS = 2000;
	var PAYMENT_POLL_MS = 1000;
	var DEFAULT_SEAT_LIMIT = 4;
	/** CANCEL_CUTOFF_HOURS' default: past it the page offers no cancel button (the server decides either way). */
	var CANCEL_CUTOFF_MS = 24 * 3600 * 1000;

	var $ = function (id) {
		return document.getElementById(id);
	};

	// ---------------------------------------------------------------- DOM helpers (text only, never markup)

	function el(tag, attrs) {
		var node = document.createElement(tag);
		if (attrs) {
			Object.keys(attrs).forEach(function (k) {
				var v = attrs[k];
				if (v === undefined || v === null || v === false) return;
				if (k === "text") node.textContent = String(v);
				else if (k === "class") node.className = v;
				else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
				else if (k === "dataset")
					Object.keys(v).forEach(function (d) {
						node.dataset[d] = String(v[d]);
					});
				else if (v === true) node.setAttribute(k, "");
				else node.setAttribute(k, String(v));
			});
		}
		for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
		return node;
	}

	function append(node, child) {
		if (child === undefined || child === null || child === false) return;
		if (Array.isArray(child))
			return child.forEach(function (c) {
				append(node, c);
			});
		node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
	}

	function clear(node) {
		while (node.firstChild) node.removeChild(node.firstChild);
		return node;
	}

	function points(n) {
		return Number(n || 0).toLocaleString("en-US") + " points";
	}

	function fmtDate(iso) {
		if (!iso) return "-";
		var d = new Date(iso);
		if (isNaN(d.getTime())) return String(iso);
		return d.toLocaleString("en-GB", { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
	}

	/** "4:05" for 245 s; "1 h 02 min" beyond an hour; "2 days" beyond two days. */
	function fmtDuration(sec) {
		sec = Math.max(0, Math.round(sec));
		if (sec >= 172800) return Math.floor(sec / 86400) + " days";
		if (sec >= 3600) return Math.floor(sec / 3600) + " h " + String(Math.floor((sec % 3600) / 60)).padStart(2, "0") + " min";
		return Math.floor(sec / 60) + ":" + String(sec % 60).padStart(2, "0");
	}

	function fmtEta(sec) {
		if (sec === null || sec === undefined || !isFinite(sec)) return "a moment";
		if (sec < 60) return "less than a minute";
		var m = Math.round(sec / 60);
		return m === 1 ? "about 1 minute" : "about " + m + " minutes";
	}

	/** A random key for Idempotency-Key (crypto.getRandomValues works on plain http too, randomUUID does not). */
	function newKey(prefix) {
		var b = new Uint8Array(16);
		crypto.getRandomValues(b);
		return (
			prefix +
			"-" +
			Array.prototype.map
				.call(b, function (x) {
					return ("0" + x.toString(16)).slice(-2);
				})
				.join("")
		);
	}

	// ---------------------------------------------------------------- session and HTTP

	var session = {
		token: function () {
			return sessionStorage.getItem(K.token);
		},
		user: function () {
			try {
				return JSON.parse(sessionStorage.getItem(K.user) || "null");
			} catch (e) {
				return null;
			}
		},
		set: function (token, user) {
			sessionStorage.setItem(K.token, token);
			sessionStorage.setItem(K.user, JSON.stringify({ id: user.id, email: user.email, name: user.name }));
		},
		clear: function () {
			Object.keys(sessionStorage)
				.filter(function (k) {
					return k.indexOf("crp.app.") === 0;
				})
				.forEach(function (k) {
					sessionStorage.removeItem(k);
				});
		}
	};

	function ApiError(status, body) {
		this.status = status;
		this.body = body || {};
		this.type = (body && body.type) || (status === 0 ? "NETWORK" : "HTTP_" + status);
		this.data = (body && body.data) || {};
		this.message = (body && body.message) || "request failed (" + status + ")";
	}

	/**
	 * One call to /api: answers `{status, data}`; an error answer rejects with an ApiError (a network failure is
	 * status 0, type NETWORK). A 401 on anything but sign-in ends the session.
	 */
	/**
	 * A GET that meets a server busy or briefly unreachable (503, 429, no answer) is asked again a few times (after
	 * Retry-After, at most 3 s): a read is safe to repeat, and a fan would only press reload. Writes are not
	 * repeated here: their retry is the fan's, with the same Idempotency-Key.
	 */
	var READ_RETRIES = 3;

	function api(method, path, opts, attempt) {
		opts = opts || {};
		attempt = attempt || 0;
		var again = function (err, retryAfterSec) {
			if (method !== "GET" || attempt >= READ_RETRIES) throw err;
			var wait = Math.min(3000, retryAfterSec > 0 ? retryAfterSec * 1000 : 500 * Math.pow(2, attempt));
			return new Promise(function (resolve) {
				setTimeout(resolve, wait);
			}).then(function () {
				return api(method, path, opts, attempt + 1);
			});
		};
		var headers = { accept: "application/json" };
		var token = session.token();
		if (token) headers.authorization = "Bearer " + token;
		if (opts.body !== undefined) headers["content-type"] = "application/json";
		Object.keys(opts.headers || {}).forEach(function (h) {
			headers[h] = opts.headers[h];
		});
		return fetch(path, {
			method: method,
			headers: headers,
			body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
			credentials: "omit",
			cache: "no-store"
		}).then(
			function (res) {
				return res.text().then(function (text) {
					var data = null;
					try {
						data = text ? JSON.parse(text) : null;
					} catch (e) {
						data = null;
					}
					if (res.ok) return { status: res.status, data: data };
					var err = new ApiError(res.status, data);
					if (res.status === 503 || res.status === 429) return again(err, Number(res.headers.get("retry-after")) || 0);
					if (res.status === 401 && path.indexOf("/api/auth/") !== 0) {
						session.clear();
						showAlert("Your session has ended. Please sign in again.");
						go("#/signin");
					}
					throw err;
				});
			},
			function () {
				return again(new ApiError(0, null), 0);
			}
		);
	}

	/** The rows of a list answer (`{rows}`), or the answer itself when it is a plain array. */
	function rowsOf(data) {
		if (Array.isArray(data)) return data;
		return (data && data.rows) || [];
	}

	// ---------------------------------------------------------------- errors in a fan's words

	function say(err) {
		if (!(err instanceof ApiError)) return "Something went wrong on this page. Please reload it and try again.";
		var d = err.data || {};
		switch (err.type) {
			case "NETWORK":
				return "We could not reach the box office. Check your connection and try again.";
			case "SEAT_UNAVAILABLE":
				return "Someone just took one of those seats. The map now shows what is still free: please choose again.";
			case "SEAT_LIMIT_EXCEEDED":
				return (
					"You can have at most " +
					(d.limit || DEFAULT_SEAT_LIMIT) +
					" seats for this show" +
					(d.taken ? " (you already have " + d.taken + ")" : "") +
					". Choose fewer seats."
				);
			case "OPEN_RESERVATION_EXISTS":
				return "You already have seats on hold for this show. Pay for them or cancel them first (see My bookings).";
			case "INSUFFICIENT_POINTS":
				return "You do not have enough points for this. Top up below and pay again: your seats stay held until the timer runs out.";
			case "SALES_CLOSED":
				return "Ticket sales for this show are closed.";
			case "SALES_NOT_OPEN":
				return "Ticket sales have not opened yet. Join the waiting room and you will be let in when they open.";
			case "SOLD_OUT":
				return "This concert is sold out. Seats can come back when someone cancels, so try again later.";
			case "QUEUE_TOKEN_NOT_ACTIVE":
				return "Your turn in the waiting room is over. Join the waiting room again to continue.";
			case "CANCELLATION_CLOSED":
				return (
					"This booking can no longer be cancelled: cancellations close " + (d.cutoff ? "on " + fmtDate(d.cutoff) : "24 hours before the show") + "."
				);
			case "RESERVATION_NOT_CANCELLABLE":
				return "This booking cannot be cancelled now (it is being paid, or it is already cancelled or expired).";
			case "RESERVATION_NOT_PAYABLE":
				return "These seats can no longer be paid for: the hold ran out, or the booking was already paid or cancelled.";
			case "IDEMPOTENCY_KEY_IN_PROGRESS":
				return "Your request is still being processed. Please wait a moment.";
			case "ROLLED_BACK":
				return "The payment could not be completed and nothing was charged. Please try again.";
			case "BALANCE_LIMIT_EXCEEDED":
				return "That top-up would take your balance over the limit.";
			case "EMAIL_TAKEN":
				return "An account with this email already exists. Sign in instead.";
			case "INVALID_CREDENTIALS":
				return "That email and password do not match. Please try again.";
			case "LOGIN_THROTTLED":
			case "RATE_LIMITED":
				return "Too many attempts. Please wait a minute and try again.";
			case "REVIEW_NOT_ALLOWED":
				return d.reason === "SHOW_NOT_YET" ? "You can review this concert after the show." : "Only fans with a booking for this concert can review it.";
			case "REVIEW_EXISTS":
				return "You have already reviewed this concert.";
			case "VALIDATION_ERROR":
				return "Please check the form: " + fieldsOf(err.body.data) + ".";
			case "NOT_FOUND":
				return "We could not find that. It may have been removed.";
			case "UNAUTHORIZED":
				return "Please sign in again.";
			case "SERVICE_UNAVAILABLE":
			case "TIMEOUT":
			case "SEATS_BUSY":
			case "SALE_CONTENDED":
				return "The box office is very busy right now. Please try again in a moment.";
			default:
				return err.status >= 500 ? "The box office has a problem right now. Please try again in a moment." : "That did not work: " + err.message;
		}
	}

	function fieldsOf(list) {
		if (!Array.isArray(list) || list.length === 0) return "some fields are not valid";
		return list
			.map(function (f) {
				var name = String(f.field || "a field");
				if (name === "password") return "the password needs 8 to 128 characters";
				return name + " is not valid";
			})
			.join("; ");
	}

	function showAlert(text) {
		var a = $("alert");
		a.textContent = text || "";
		a.hidden = !text;
	}

	function announce(text) {
		// Cleared first so the same words are read again.
		var live = $("live");
		live.textContent = "";
		setTimeout(function () {
			live.textContent = text;
		}, 30);
	}

	// ---------------------------------------------------------------- routing and view lifetime

	var cleanups = [];
	function onLeave(fn) {
		cleanups.push(fn);
	}
	function every(ms, fn) {
		var id = setInterval(fn, ms);
		onLeave(function () {
			clearInterval(id);
		});
		return id;
	}

	function go(hash) {
		if (location.hash === hash) route();
		else location.hash = hash;
	}

	var ROUTES = [
		[/^#\/signin$/, viewSignIn, false],
		[/^#\/signup$/, viewSignUp, false],
		[/^#\/concerts$/, viewConcerts, false],
		[/^#\/concert\/([\w-]+)$/, viewConcert, false],
		[/^#\/queue\/([\w-]+)\/([\w-]+)$/, viewQueue, true],
		[/^#\/seats\/([\w-]+)\/([\w-]+)$/, viewSeats, true],
		[/^#\/checkout\/([\w-]+)$/, viewCheckout, true],
		[/^#\/ticket\/([\w-]+)$/, viewTicket, true],
		[/^#\/bookings$/, viewBookings, true],
		[/^#\/points$/, viewPoints, true],
		[/^#\/inbox$/, viewInbox, true]
	];

	var renderId = 0;

	function route() {
		cleanups.splice(0).forEach(function (fn) {
			try {
				fn();
			} catch (e) {
				/* a view's timer or feed already gone */
			}
		});
		renderId++;
		var hash = location.hash || "#/concerts";
		var signedIn = !!session.token();
		$("nav").hidden = !signedIn;
		$("signout").hidden = !signedIn;
		document.querySelectorAll("[data-nav]").forEach(function (a) {
			if (hash.indexOf("#/" + a.dataset.nav) === 0) a.setAttribute("aria-current", "page");
			else a.removeAttribute("aria-current");
		});
		for (var i = 0; i < ROUTES.length; i++) {
			var m = ROUTES[i][0].exec(hash);
			if (!m) continue;
			if (ROUTES[i][2] && !signedIn) {
				sessionStorage.setItem("crp.app.next", hash);
				return go("#/signin");
			}
			if (!signedIn && hash !== "#/signup" && hash !== "#/signin") return go("#/signin");
			var view = $("view");
			view.setAttribute("aria-busy", "true");
			var result = ROUTES[i][1].apply(null, m.slice(1).concat([renderId]));
			Promise.resolve(result)
				.catch(function (err) {
					showAlert(say(err));
				})
				.then(function () {
					view.setAttribute("aria-busy", "false");
				});
			return;
		}
		go(signedIn ? "#/concerts" : "#/signin");
	}

	/** Starts a view: clears it, sets the title and heading, moves the focus to the heading (screen readers read it). */
	function page(title, keepAlert) {
		if (!keepAlert) showAlert("");
		var view = clear($("view"));
		document.title = title + " - Concert tickets";
		var h = el("h1", { text: title, tabindex: "-1", id: "view-title" });
		view.appendChild(h);
		if (!pageLoadFocus) h.focus();
		pageLoadFocus = false;
		return view;
	}
	var pageLoadFocus = true;

	/** Is this view still the one on screen (the user may have moved on while a request ran)? */
	function current(id) {
		return id === renderId;
	}

	/** A button that is disabled while its promise runs; a second click meanwhile does nothing. */
	function busyButton(button, busyText, run, after) {
		button.addEventListener("click", function (ev) {
			ev.preventDefault();
			if (button.disabled || button.dataset.busy === "1") return;
			var label = button.textContent;
			button.dataset.busy = "1";
			button.disabled = true;
			button.setAttribute("aria-disabled", "true");
			if (busyText) button.textContent = busyText;
			Promise.resolve()
				.then(run)
				.catch(function (err) {
					showAlert(say(err));
				})
				.then(function () {
					if (!button.isConnected) return;
					delete button.dataset.busy;
					button.disabled = false;
					button.removeAttribute("aria-disabled");
					if (busyText) button.textContent = label;
					if (after) after();
				});
		});
		return button;
	}

	// ---------------------------------------------------------------- header: balance and unread count

	function refreshBalance() {
		if (!session.token()) return Promise.resolve(null);
		return api("GET", "/api/points").then(
			function (r) {
				$("balance").textContent = "(" + Number(r.data.balance).toLocaleString("en-US") + ")";
				return r.data.balance;
			},
			function () {
				return null;
			}
		);
	}

	function refreshUnread() {
		if (!session.token()) return Promise.resolve();
		return api("GET", "/api/notifications?pageSize=100").then(
			function (r) {
				var n = rowsOf(r.data).filter(function (x) {
					return !x.readAt;
				}).length;
				$("unread").textContent = n > 0 ? "(" + n + " new)" : "";
			},
			function () {
				/* the inbox is optional */
			}
		);
	}

	// ---------------------------------------------------------------- sign in, sign up

	function field(label, attrs) {
		var input = el("input", attrs);
		return el("label", { class: "field" }, el("span", { text: label }), input);
	}

	function viewSignIn() {
		var view = page("Sign in", true);
		view.appendChild(el("p", { class: "muted", text: "Sign in to book tickets. You stay signed in until you close this tab." }));
		var form = el(
			"form",
			{ id: "signin-form", class: "card narrow", novalidate: true },
			field("Email", { id: "signin-email", name: "email", type: "email", required: true, maxlength: 254, autocomplete: "username" }),
			field("Password", { id: "signin-password", name: "password", type: "password", required: true, maxlength: 128, autocomplete: "current-password" }),
			el("button", { id: "signin-submit", type: "submit", class: "primary", text: "Sign in" })
		);
		view.appendChild(form);
		view.appendChild(el("p", null, "New here? ", el("a", { href: "#/signup", id: "to-signup", text: "Create an account" })));
		form.addEventListener("submit", function (ev) {
			ev.preventDefault();
			var email = $("signin-email").value.trim();
			var password = $("signin-password").value;
			if (!email || !password) return showAlert("Please enter your email and password.");
			signIn(email, password, $("signin-submit"));
		});
	}

	function signIn(email, password, button) {
		button.disabled = true;
		return api("POST", "/api/auth/login", { body: { email: email, password: password } })
			.then(function (r) {
				session.set(r.data.accessToken, r.data.user);
				refreshBalance();
				refreshUnread();
				var next = sessionStorage.getItem("crp.app.next");
				sessionStorage.removeItem("crp.app.next");
				go(next || "#/concerts");
			})
			.catch(function (err) {
				showAlert(say(err));
			})
			.then(function () {
				button.disabled = false;
			});
	}

	function viewSignUp() {
		var view = page("Create an account", true);
		var form = el(
			"form",
			{ id: "signup-form", class: "card narrow", novalidate: true },
			field("Name", { id: "signup-name", name: "name", type: "text", required: true, maxlength: 100, autocomplete: "name" }),
			field("Email", { id: "signup-email", name: "email", type: "email", required: true, maxlength: 254, autocomplete: "email" }),
			field("Password (at least 8 characters)", {
				id: "signup-password",
				name: "password",
				type: "password",
				required: true,
				minlength: 8,
				maxlength: 128,
				autocomplete: "new-password"
			}),
			el("button", { id: "signup-submit", type: "submit", class: "primary", text: "Create account" })
		);
		view.appendChild(form);
		view.appendChild(el("p", null, "Already have an account? ", el("a", { href: "#/signin", text: "Sign in" })));
		form.addEventListener("submit", function (ev) {
			ev.preventDefault();
			var name = $("signup-name").value.trim();
			var email = $("signup-email").value.trim();
			var password = $("signup-password").value;
			if (!name || !email) return showAlert("Please enter your name and email.");
			if (password.length < 8) return showAlert("Your password needs at least 8 characters.");
			var button = $("signup-submit");
			button.disabled = true;
			api("POST", "/api/auth/register", { body: { email: email, password: password, name: name } })
				.then(function () {
					return signIn(email, password, button);
				})
				.catch(function (err) {
					showAlert(say(err));
					button.disabled = false;
				});
		});
	}

	// ---------------------------------------------------------------- concerts

	function salesLine(sales) {
		if (!sales) return "";
		var now = Date.now();
		if (sales.state === "CLOSED" || (sales.closesAt && new Date(sales.closesAt).getTime() <= now)) return "Sales closed";
		if (sales.state === "NOT_OPEN" || (sales.opensAt && new Date(sales.opensAt).getTime() > now)) return "Sales open " + fmtDate(sales.opensAt);
		return "On sale now";
	}

	function priceRange(seats) {
		if (!seats || seats.length === 0) return "";
		var prices = seats.map(function (s) {
			return s.price;
		});
		var lo = Math.min.apply(null, prices);
		var hi = Math.max.apply(null, prices);
		return lo === hi ? points(lo) : points(lo).replace(" points", "") + " to " + points(hi);
	}

	function leftLine(s) {
		if (s.availableSeats <= 0) return "Sold out";
		return s.availableSeats + " of " + s.totalSeats + " seats left";
	}

	function viewConcerts(id) {
		var view = page("Concerts");
		var list = el("ul", { class: "concerts", id: "concert-list" });
		view.appendChild(list);
		return api("GET", "/api/concerts?pageSize=50").then(function (r) {
			if (!current(id)) return;
			var rows = rowsOf(r.data);
			if (rows.length === 0) list.appendChild(el("li", { class: "muted", text: "No concerts yet." }));
			return Promise.all(
				rows.map(function (c) {
					var item = el(
						"li",
						{ class: "card concert", dataset: { id: c.id } },
						el("h2", null, el("a", { href: "#/concert/" + c.id, text: c.title })),
						el("p", { class: "artist", text: c.artist + " at " + ((c.venue && c.venue.name) || "") }),
						el("p", { class: "sales", text: salesLine(c.sales) })
					);
					var detail = el("div", { class: "schedules" });
					item.appendChild(detail);
					list.appendChild(item);
					return api("GET", "/api/concerts/" + c.id).then(function (d) {
						var schedules = d.data.schedules || [];
						detail.appendChild(
							el(
								"ul",
								{ class: "plain" },
								schedules.map(function (s) {
									return el("li", null, el("strong", { text: fmtDate(s.startsAt) }), " · ", leftLine(s));
								})
							)
						);
						if (schedules[0])
							return api("GET", "/api/schedules/" + schedules[0].id + "/seats").then(function (seats) {
								detail.appendChild(el("p", { class: "price", text: "Tickets " + priceRange(seats.data) }));
							});
					});
				})
			);
		});
	}

	function viewConcert(concertId, id) {
		return api("GET", "/api/concerts/" + concertId).then(function (r) {
			if (!current(id)) return;
			var c = r.data;
			var view = page(c.title);
			view.appendChild(el("p", { class: "artist", text: c.artist + " at " + ((c.venue && c.venue.name) || "") }));
			view.appendChild(el("p", { class: "sales", text: salesLine(c.sales) }));
			view.appendChild(el("h2", { text: "Shows" }));
			var list = el("ul", { class: "schedules-list", id: "schedule-list" });
			view.appendChild(list);
			(c.schedules || []).forEach(function (s) {
				var closed = c.sales && c.sales.state === "CLOSED";
				var started = new Date(s.startsAt).getTime() <= Date.now();
				var soldOut = s.availableSeats <= 0;
				var price = el("span", { class: "price" });
				api("GET", "/api/schedules/" + s.id + "/seats").then(function (seats) {
					price.textContent = priceRange(seats.data);
				});
				list.appendChild(
					el(
						"li",
						{ class: "card schedule", dataset: { id: s.id } },
						el("h3", { text: fmtDate(s.startsAt) }),
						el("p", null, leftLine(s), " · ", price),
						closed || started || soldOut
							? el("p", { class: "muted", text: started ? "This show has started." : soldOut ? "Sold out" : "Sales closed" })
							: el("a", { class: "button primary", href: "#/queue/" + c.id + "/" + s.id, dataset: { schedule: s.id }, text: "Choose seats" })
					)
				);
			});
			if (c.schedules && c.schedules.some(s => new Date(s.startsAt).getTime() <= Date.now())) view.appendChild(reviewForm(c.id));
		});
	}

	// ---------------------------------------------------------------- waiting room

	function queueToken(concertId) {
		return sessionStorage.getItem(K.queue + concertId);
	}

	var QUEUE_WORDS = {
		PRE_QUEUE: "Sales have not opened yet. You are in the pre-queue: when they open, everyone in it gets a place in a random order.",
		WAITING: "You are in the waiting room. Keep this page open: it keeps your place.",
		ACTIVE: "It is your turn! Taking you to the seat map...",
		EXPIRED: "Your place in the waiting room lapsed (the page was closed or idle too long).",
		LEFT: "You left the waiting room.",
		COMPLETED: "Your purchase with this place in line is done.",
		SOLD_OUT: "This concert is sold out. Seats can come back when someone cancels: try again later.",
		CLOSED: "Ticket sales for this concert are over."
	};

	function viewQueue(concertId, scheduleId, id) {
		var view = page("Waiting room");
		var state = el("p", { id: "queue-state", class: "queue-state", dataset: { status: "" } });
		var position = el("p", { id: "queue-position", class: "queue-position", "aria-live": "polite", "aria-atomic": "true" });
		var progress = el("progress", { id: "queue-progress", max: "100", value: "0", "aria-label": "Progress through the waiting room" });
		var countdown = el("p", { id: "queue-countdown", class: "countdown", role: "timer", hidden: true });
		var actions = el("div", { class: "actions" });
		view.appendChild(el("div", { class: "card queue", id: "queue" }, state, position, progress, countdown, actions));

		var firstPosition = null;
		var opensAt = null;
		var lastStatus = null;
		var stopped = false;

		function leaveButton(token) {
			return busyButton(el("button", { type: "button", id: "queue-leave", text: "Leave the waiting room" }), "Leaving...", function () {
				return api("DELETE", "/api/queue/tokens/" + token).then(function () {
					sessionStorage.removeItem(K.queue + concertId);
					go("#/concert/" + concertId);
				});
			});
		}

		function rejoinButton() {
			return el("button", {
				type: "button",
				id: "queue-rejoin",
				class: "primary",
				text: "Join the waiting room again",
				onclick: function () {
					sessionStorage.removeItem(K.queue + concertId);
					go("#/queue/" + concertId + "/" + scheduleId);
				}
			});
		}

		function show(q) {
			if (!current(id) || stopped) return;
			if (q.token && q.token !== queueToken(concertId)) sessionStorage.setItem(K.queue + concertId, q.token);
			var status = q.status;
			state.dataset.status = status;
			state.textContent = QUEUE_WORDS[status] || status;
			countdown.hidden = status !== "PRE_QUEUE";
			if (status === "WAITING") {
				if (firstPosition === null || q.position > firstPosition) firstPosition = q.position;
				var done = firstPosition > 0 ? Math.round(((firstPosition - q.position + 1) / (firstPosition + 1)) * 100) : 0;
				progress.value = done;
				progress.hidden = false;
				var words = "Your place in line: " + q.position + ". Estimated wait: " + fmtEta(q.etaSeconds) + ".";
				if (position.textContent !== words) position.textContent = words;
			} else if (status === "PRE_QUEUE") {
				opensAt = q.opensAt ? new Date(q.opensAt).getTime() : Date.now() + (q.etaSeconds || 0) * 1000;
				progress.value = 0;
				position.textContent = "Sales open " + fmtDate(q.opensAt || new Date(opensAt).toISOString()) + ".";
				tick();
			} else if (status === "ACTIVE") {
				progress.value = 100;
				position.textContent = "You are in!";
			} else {
				progress.hidden = true;
				position.textContent = "";
			}
			if (status !== lastStatus) {
				clear(actions);
				if (status === "WAITING" || status === "PRE_QUEUE") actions.appendChild(leaveButton(q.token));
				if (status === "EXPIRED" || status === "LEFT") actions.appendChild(rejoinButton());
				if (status === "SOLD_OUT" || status === "CLOSED" || status === "COMPLETED")
					actions.appendChild(el("a", { class: "button", href: "#/concerts", text: "Back to the concerts" }));
				lastStatus = status;
			}
			if (status === "ACTIVE") {
				stopped = true;
				setTimeout(function () {
					if (current(id)) go("#/seats/" + concertId + "/" + scheduleId);
				}, 600);
			} else if (status !== "WAITING" && status !== "PRE_QUEUE") {
				stopped = true;
				if (status !== "SOLD_OUT") sessionStorage.removeItem(K.queue + concertId);
			}
		}

		function tick() {
			if (opensAt === null || countdown.hidden) return;
			var left = (opensAt - Date.now()) / 1000;
			countdown.textContent = left > 0 ? "Sales open in " + fmtDuration(left) : "Sales are opening...";
		}

		function poll() {
			if (stopped || !current(id)) return;
			var token = queueToken(concertId);
			if (!token) return;
			api("GET", "/api/queue/tokens/" + token).then(
				function (r) {
					show(r.data);
				},
				function (err) {
					if (!current(id)) return;
					if (err.status === 404) {
						sessionStorage.removeItem(K.queue + concertId);
						show({ status: "EXPIRED" });
					} else showAlert(say(err));
				}
			);
		}

		every(1000, tick);
		every(QUEUE_POLL_MS, poll);
		var token = queueToken(concertId);
		var first = token ? api("GET", "/api/queue/tokens/" + token) : Promise.reject(new ApiError(404, null));
		return first
			.then(
				function (r) {
					var s = r.data.status;
					// A token of an earlier visit that is over: take a new place.
					if (s === "EXPIRED" || s === "LEFT" || s === "COMPLETED") throw new ApiError(404, null);
					return r;
				},
				function (err) {
					throw err;
				}
			)
			.catch(function (err) {
				if (err.status !== 404) throw err;
				sessionStorage.removeItem(K.queue + concertId);
				return api("POST", "/api/queue/tokens", { body: { concertId: concertId } });
			})
			.then(
				function (r) {
					sessionStorage.setItem(K.queue + concertId, r.data.token);
					show(r.data);
				},
				function (err) {
					if (err.type === "SOLD_OUT") return show({ status: "SOLD_OUT" });
					if (err.type === "SALES_CLOSED") return show({ status: "CLOSED" });
					throw err;
				}
			);
	}

	// ---------------------------------------------------------------- seat map

	var STATUS_WORDS = { AVAILABLE: "available", HELD: "held by someone else", SOLD: "sold" };

	/** "A-12" -> {row: "A", num: 12}; anything else keeps its label as its row. */
	function parseLabel(label) {
		var m = /^([A-Za-z]+)-(\d+)$/.exec(String(label));
		return m ? { row: m[1].toUpperCase(), num: Number(m[2]) } : { row: String(label), num: 0 };
	}

	function viewSeats(concertId, scheduleId, id) {
		var token = queueToken(concertId);
		if (!token) return go("#/queue/" + concertId + "/" + scheduleId);
		var view = page("Choose your seats");
		var info = el("p", { class: "muted", id: "seat-show" });
		var turn = el("p", { class: "turn", id: "queue-turn" });
		var map = el("div", { id: "seat-map", class: "seat-map", "aria-describedby": "seat-legend" });
		var summary = el("p", { id: "seat-summary", class: "seat-summary", "aria-live": "polite" });
		var holdBtn = el("button", { type: "button", id: "hold", class: "primary", disabled: true, text: "Hold these seats" });
		var feedState = el("p", { id: "seat-feed", class: "muted small", dataset: { mode: "" } });
		view.appendChild(info);
		view.appendChild(turn);
		view.appendChild(legend());
		view.appendChild(map);
		view.appendChild(el("div", { class: "card checkout-bar" }, summary, holdBtn));
		view.appendChild(feedState);

		var seats = new Map(); // id -> {seat, button}
		var selected = [];
		var limit = DEFAULT_SEAT_LIMIT;

		function seatName(s) {
			return s.label + ", " + (selected.indexOf(s.id) >= 0 ? "selected" : STATUS_WORDS[s.status] || s.status) + ", " + points(s.price);
		}

		function paint(entry) {
			var s = entry.seat;
			var b = entry.button;
			var mine = selected.indexOf(s.id) >= 0;
			b.className = "seat " + s.status.toLowerCase() + (mine ? " selected" : "");
			b.dataset.status = s.status;
			b.setAttribute("aria-label", seatName(s));
			b.setAttribute("aria-pressed", mine ? "true" : "false");
			if (s.status !== "AVAILABLE") b.setAttribute("aria-disabled", "true");
			else b.removeAttribute("aria-disabled");
			var p = parseLabel(s.label);
			b.firstChild.textContent = mine ? "✓" : s.status === "SOLD" ? "×" : s.status === "HELD" ? "–" : String(p.num || s.label);
		}

		function updateSummary() {
			var total = 0;
			var labels = selected.map(function (sid) {
				var s = seats.get(sid).seat;
				total += s.price;
				return s.label;
			});
			summary.textContent =
				selected.length === 0
					? "Choose up to " + limit + " seats."
					: selected.length + " of up to " + limit + " seats chosen: " + labels.join(", ") + ". Total " + points(total) + ".";
			holdBtn.disabled = selected.length === 0 || holdBtn.dataset.busy === "1";
		}

		function toggle(sid) {
			var entry = seats.get(sid);
			if (!entry) return;
			var i = selected.indexOf(sid);
			if (i >= 0) selected.splice(i, 1);
			else {
				if (entry.seat.status !== "AVAILABLE") {
					announce(entry.seat.label + " is " + STATUS_WORDS[entry.seat.status] + ".");
					return;
				}
				if (selected.length >= limit) {
					showAlert("You can choose at most " + limit + " seats for this show.");
					return;
				}
				selected.push(sid);
			}
			showAlert("");
			paint(entry);
			updateSummary();
		}

		/** Draws the map once: sections by grade, rows by the label's letter, seats in number order. */
		function build(list) {
			clear(map);
			var sections = [];
			var byGrade = {};
			list.forEach(function (s) {
				var g = s.grade || "Seats";
				if (!byGrade[g]) {
					byGrade[g] = { grade: g, rows: {}, order: [], price: s.price };
					sections.push(byGrade[g]);
				}
				var p = parseLabel(s.label);
				if (!byGrade[g].rows[p.row]) {
					byGrade[g].rows[p.row] = [];
					byGrade[g].order.push(p.row);
				}
				byGrade[g].rows[p.row].push(s);
			});
			map.appendChild(el("p", { class: "stage", text: "Stage" }));
			sections.forEach(function (sec) {
				var box = el("div", { class: "section", role: "group", "aria-label": "Section " + sec.grade });
				box.appendChild(el("h2", { class: "section-title", text: "Section " + sec.grade + " · " + points(sec.price) }));
				sec.order.forEach(function (row) {
					var line = el("div", { class: "row", role: "group", "aria-label": "Row " + row });
					line.appendChild(el("span", { class: "row-label", "aria-hidden": "true", text: row }));
					sec.rows[row]
						.sort(function (a, b) {
							return parseLabel(a.label).num - parseLabel(b.label).num;
						})
						.forEach(function (s) {
							var b = el(
								"button",
								{ type: "button", class: "seat", dataset: { id: s.id, label: s.label } },
								el("span", { "aria-hidden": "true" })
							);
							b.addEventListener("click", function () {
								toggle(s.id);
							});
							var entry = { seat: s, button: b };
							seats.set(s.id, entry);
							paint(entry);
							line.appendChild(b);
						});
					box.appendChild(line);
				});
				map.appendChild(box);
			});
		}

		/** Applies a status list ({id, status}); a chosen seat someone else took leaves the choice, and the fan is told. */
		function apply(list) {
			var lost = [];
			list.forEach(function (u) {
				var entry = seats.get(u.id);
				if (!entry || entry.seat.status === u.status) return;
				entry.seat.status = u.status;
				var i = selected.indexOf(u.id);
				if (i >= 0 && u.status !== "AVAILABLE") {
					selected.splice(i, 1);
					lost.push(entry.seat.label);
				}
				paint(entry);
			});
			if (lost.length > 0) {
				announce("Taken by someone else: " + lost.join(", ") + ".");
				updateSummary();
			}
			map.dataset.updatedAt = String(Date.now());
		}

		function refresh() {
			return api("GET", "/api/schedules/" + scheduleId + "/seats").then(function (r) {
				if (current(id)) apply(r.data || []);
			});
		}

		var polling = null;
		function startPolling() {
			if (polling || !current(id)) return;
			feedState.dataset.mode = "poll";
			feedState.textContent = "The map refreshes every 2 seconds.";
			polling = every(SEATS_POLL_MS, function () {
				refresh().catch(function () {
					/* next round */
				});
			});
		}

		function startFeed() {
			if (typeof window.EventSource !== "function") return startPolling();
			var es;
			try {
				es = new EventSource("/api/schedules/" + encodeURIComponent(scheduleId) + "/seats/events");
			} catch (e) {
				return startPolling();
			}
			onLeave(function () {
				es.close();
			});
			es.addEventListener("seats", function (ev) {
				try {
					var msg = JSON.parse(ev.data);
					if (msg && Array.isArray(msg.seats) && (!msg.scheduleId || msg.scheduleId === scheduleId)) apply(msg.seats);
					feedState.dataset.mode = "live";
					feedState.textContent = "The map updates live.";
				} catch (e) {
					/* a malformed message: wait for the next one */
				}
			});
			es.addEventListener("error", function () {
				es.close();
				startPolling();
			});
		}

		function hold() {
			var ids = selected.slice();
			return api("POST", "/api/reservations", {
				body: { scheduleId: scheduleId, seatIds: ids },
				headers: { "x-queue-token": queueToken(concertId) }
			}).then(
				function (r) {
					go("#/checkout/" + r.data.id);
				},
				function (err) {
					if (!current(id)) return;
					if (err.type === "SEAT_LIMIT_EXCEEDED" && err.data.limit) {
						limit = Math.max(0, err.data.limit - (err.data.taken || 0)) || err.data.limit;
						updateSummary();
					}
					if (err.type === "SEAT_UNAVAILABLE") {
						return refresh().then(function () {
							showAlert(say(err));
						});
					}
					if (err.type === "OPEN_RESERVATION_EXISTS" && err.data.reservationId) {
						showAlert(say(err));
						$("view").appendChild(el("p", null, el("a", { href: "#/checkout/" + err.data.reservationId, text: "Go to the seats you hold" })));
						return;
					}
					if (err.type === "QUEUE_TOKEN_NOT_ACTIVE") {
						sessionStorage.removeItem(K.queue + concertId);
						showAlert(say(err));
						$("view").appendChild(el("p", null, el("a", { href: "#/queue/" + concertId + "/" + scheduleId, text: "Join the waiting room again" })));
						return;
					}
					throw err;
				}
			);
		}
		// The button stays off with nothing chosen (updateSummary), also after a request.
		busyButton(holdBtn, "Holding...", hold, updateSummary);

		function keepTurn() {
			api("GET", "/api/queue/tokens/" + queueToken(concertId)).then(
				function (r) {
					if (!current(id)) return;
					if (r.data.status === "ACTIVE")
						turn.textContent =
							"Your turn lasts until " + new Date(r.data.expiresAt).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }) + ".";
					else {
						turn.textContent = "Your turn is over. ";
						turn.appendChild(el("a", { href: "#/queue/" + concertId + "/" + scheduleId, text: "Join the waiting room again" }));
					}
				},
				function () {
					/* shown on the next try */
				}
			);
		}

		return Promise.all([api("GET", "/api/schedules/" + scheduleId + "/seats"), api("GET", "/api/concerts/" + concertId)]).then(function (rs) {
			if (!current(id)) return;
			var c = rs[1].data;
			var sched = (c.schedules || []).filter(function (s) {
				return s.id === scheduleId;
			})[0];
			info.textContent = c.title + " · " + (sched ? fmtDate(sched.startsAt) : "");
			build(rs[0].data || []);
			updateSummary();
			keepTurn();
			every(10000, keepTurn);
			startFeed();
		});
	}

	function legend() {
		function item(cls, symbol, words) {
			return el("li", null, el("span", { class: "seat mini " + cls, "aria-hidden": "true" }, el("span", { text: symbol })), words);
		}
		return el(
			"ul",
			{ class: "legend", id: "seat-legend", "aria-label": "Seat key" },
			item("available", "1", "Available (number)"),
			item("available selected", "✓", "Your choice (tick)"),
			item("held", "–", "Held by someone (dash, dotted)"),
			item("sold", "×", "Sold (cross, striped)")
		);
	}

	// ---------------------------------------------------------------- checkout: hold countdown, points, pay

	function loadReservation(resId) {
		return api("GET", "/api/reservations/" + resId).then(function (r) {
			return r.data;
		});
	}

	function showOf(concertId, scheduleId) {
		return api("GET", "/api/concerts/" + concertId).then(
			function (r) {
				var s = (r.data.schedules || []).filter(function (x) {
					return x.id === scheduleId;
				})[0];
				return { title: r.data.title, artist: r.data.artist, venue: (r.data.venue && r.data.venue.name) || "", startsAt: s ? s.startsAt : null };
			},
			function () {
				return { title: "Concert", artist: "", venue: "", startsAt: null };
			}
		);
	}

	function seatList(res) {
		return el(
			"ul",
			{ class: "plain seats-list" },
			(res.seats || []).map(function (s) {
				return el("li", { text: s.label + (s.grade ? " (section " + s.grade + ")" : "") + " · " + points(s.price) });
			})
		);
	}

	function viewCheckout(resId, id) {
		return Promise.all([loadReservation(resId), refreshBalance()]).then(function (rs) {
			if (!current(id)) return;
			var res = rs[0];
			if (res.status === "CONFIRMED") return go("#/ticket/" + res.id);
			var view = page("Pay for your seats");
			var box = el("div", { class: "card", id: "checkout", dataset: { status: res.status } });
			var showLine = el("p", { class: "muted" });
			showOf(res.concertId, res.scheduleId).then(function (sh) {
				showLine.textContent = sh.title + " · " + fmtDate(sh.startsAt);
			});
			var timer = el("p", { id: "hold-timer", class: "countdown", role: "timer" });
			var state = el("p", { id: "checkout-state", class: "state", "aria-live": "polite" });
			var balance = el("p", { id: "checkout-balance" });
			var payBtn = el("button", { type: "button", id: "pay", class: "primary big", text: "Pay " + points(res.amount) });
			var cancelBtn = el("button", { type: "button", id: "release", text: "Release these seats" });
			box.appendChild(showLine);
			box.appendChild(seatList(res));
			box.appendChild(el("p", { class: "total" }, "Total: ", el("strong", { text: points(res.amount) })));
			box.appendChild(timer);
			box.appendChild(balance);
			box.appendChild(state);
			box.appendChild(el("div", { class: "actions" }, payBtn, cancelBtn));
			view.appendChild(box);
			view.appendChild(
				topUpCard(function (bal) {
					showBalance(bal);
				})
			);

			var expiresAt = new Date(res.expiresAt).getTime();
			function tick() {
				var left = (expiresAt - Date.now()) / 1000;
				if (box.dataset.status !== "PENDING") return (timer.textContent = "");
				timer.textContent = left > 0 ? "Your seats are held for " + fmtDuration(left) + "." : "The hold on these seats has run out.";
				if (left <= 0) payBtn.disabled = true;
			}
			every(1000, tick);

			function showBalance(bal) {
				if (bal === null || bal === undefined) return;
				balance.textContent =
					"Your balance: " + points(bal) + (bal < res.amount ? " (not enough: top up " + points(res.amount - bal) + " or more)" : "");
				balance.className = bal < res.amount ? "short" : "";
			}
			showBalance(rs[1]);

			function setState(r) {
				box.dataset.status = r.status;
				if (r.status === "PAYING") {
					state.textContent = "Your payment is being processed...";
					payBtn.disabled = true;
					cancelBtn.disabled = true;
				} else if (r.status === "PENDING") {
					state.textContent = sessionStorage.getItem(K.pay + resId)
						? "Your last payment attempt did not finish. Press Pay to try again: you will not be charged twice."
						: "";
					payBtn.disabled = false;
					cancelBtn.disabled = false;
				} else if (r.status === "CONFIRMED") {
					sessionStorage.removeItem(K.pay + resId);
					go("#/ticket/" + resId);
				} else {
					sessionStorage.removeItem(K.pay + resId);
					state.textContent =
						r.status === "EXPIRED" ? "The hold ran out and the seats were released. Choose seats again." : "This reservation was cancelled.";
					payBtn.disabled = true;
					cancelBtn.disabled = true;
				}
				tick();
			}

			/** After a 202 or a reload mid-payment: read the reservation until it settles (CONFIRMED, or PENDING again). */
			function waitForSettle() {
				return new Promise(function (resolve) {
					function again() {
						if (!current(id)) return resolve(null);
						loadReservation(resId).then(
							function (r) {
								if (r.status === "PAYING") return setTimeout(again, PAYMENT_POLL_MS);
								resolve(r);
							},
							function () {
								setTimeout(again, PAYMENT_POLL_MS);
							}
						);
					}
					again();
				});
			}

			function pay() {
				// One key per attempt, kept until the attempt has a definite answer: a double click, a retry or a
				// reload reuses it, and the server answers the first payment again instead of paying twice.
				var key = sessionStorage.getItem(K.pay + resId);
				if (!key) {
					key = newKey("pay-" + resId);
					sessionStorage.setItem(K.pay + resId, key);
				}
				setState({ status: "PAYING" });
				var token = queueToken(res.concertId);
				return api("POST", "/api/payments", {
					body: { reservationId: resId },
					headers: { "idempotency-key": key, "x-queue-token": token || "none" }
				})
					.then(function (r) {
						if (r.status === 202) return waitForSettle();
						return { status: "CONFIRMED" };
					})
					.then(
						function (r) {
							if (!r || !current(id)) return;
							if (r.status === "PENDING") sessionStorage.removeItem(K.pay + resId);
							refreshBalance();
							setState(r);
							if (r.status === "PENDING") showAlert("The payment did not go through and nothing was charged. Please try again.");
						},
						function (err) {
							// A definite refusal ends the attempt (a new click makes a new key); a lost answer or a
							// request still running keeps it for the retry.
							var definite = err.status > 0 && err.status < 500 && err.type !== "IDEMPOTENCY_KEY_IN_PROGRESS";
							if (definite) sessionStorage.removeItem(K.pay + resId);
							return loadReservation(resId)
								.then(function (r) {
									if (current(id)) setState(r);
								})
								.catch(function () {
									setState({ status: "PENDING" });
								})
								.then(function () {
									showAlert(say(err));
									if (err.type === "INSUFFICIENT_POINTS") refreshBalance().then(showBalance);
									if (err.type === "QUEUE_TOKEN_NOT_ACTIVE") sessionStorage.removeItem(K.queue + res.concertId);
								});
						}
					);
			}
			/** The buttons follow the reservation's state once a request is over (busyButton re-enables them). */
			function syncButtons() {
				var open = box.dataset.status === "PENDING";
				payBtn.disabled = !open || expiresAt <= Date.now();
				cancelBtn.disabled = !open;
			}
			busyButton(payBtn, "Paying...", pay, syncButtons);
			busyButton(
				cancelBtn,
				"Releasing...",
				function () {
					return cancelReservation(res).then(function () {
						go("#/bookings");
					});
				},
				syncButtons
			);

			setState(res);
			if (res.status === "PAYING") {
				return waitForSettle().then(function (r) {
					if (r && current(id)) {
						setState(r);
						refreshBalance();
					}
				});
			}
		});
	}

	// ---------------------------------------------------------------- points

	function topUpCard(onDone) {
		var amount = el("input", {
			id: "topup-amount",
			name: "amount",
			type: "number",
			min: "1",
			max: "10000000",
			step: "1",
			required: true,
			inputmode: "numeric"
		});
		var btn = el("button", { type: "submit", id: "topup-submit", text: "Top up" });
		var result = el("p", { id: "topup-result", class: "muted", "aria-live": "polite" });
		var form = el(
			"form",
			{ class: "card", id: "topup-form", novalidate: true },
			el("h2", { text: "Top up points" }),
			el("label", { class: "field" }, el("span", { text: "Amount in points" }), amount),
			btn,
			result
		);
		form.addEventListener("submit", function (ev) {
			ev.preventDefault();
			if (btn.disabled) return;
			var n = Number(amount.value);
			if (!Number.isInteger(n) || n < 1 || n > 10000000) return showAlert("Enter a whole number of points from 1 to 10,000,000.");
			// One key per top-up, kept (with its amount) until a definite answer: a retry never charges twice.
			var pending = null;
			try {
				pending = JSON.parse(sessionStorage.getItem(K.charge) || "null");
			} catch (e) {
				pending = null;
			}
			var key = pending && pending.amount === n ? pending.key : newKey("charge");
			sessionStorage.setItem(K.charge, JSON.stringify({ key: key, amount: n }));
			btn.disabled = true;
			api("POST", "/api/points/charge", { body: { amount: n }, headers: { "idempotency-key": key } })
				.then(
					function (r) {
						sessionStorage.removeItem(K.charge);
						result.textContent = "Added " + points(n) + ". Your balance is " + points(r.data.balance) + ".";
						amount.value = "";
						showAlert("");
						refreshBalance();
						if (onDone) onDone(r.data.balance);
					},
					function (err) {
						if (err.status > 0 && err.status < 500 && err.type !== "IDEMPOTENCY_KEY_IN_PROGRESS") sessionStorage.removeItem(K.charge);
						showAlert(say(err));
					}
				)
				.then(function () {
					btn.disabled = false;
				});
		});
		return form;
	}

	function viewPoints(id) {
		var view = page("Points");
		var bal = el("p", { id: "points-balance", class: "big-number" });
		view.appendChild(el("div", { class: "card" }, el("h2", { text: "Your balance" }), bal));
		view.appendChild(
			topUpCard(function (b) {
				bal.textContent = points(b);
				loadTx();
			})
		);
		var tx = el("div", { id: "points-history" });
		view.appendChild(el("div", { class: "card" }, el("h2", { text: "History" }), tx));
		var TX = { CHARGE: "Top-up", PAYMENT: "Payment", REFUND: "Refund" };
		function loadTx() {
			return api("GET", "/api/points/transactions?pageSize=20").then(function (r) {
				if (!current(id)) return;
				var rows = rowsOf(r.data);
				clear(tx);
				if (rows.length === 0) return tx.appendChild(el("p", { class: "muted", text: "Nothing yet." }));
				tx.appendChild(
					el(
						"ul",
						{ class: "plain" },
						rows.map(function (t) {
							var sign = t.type === "PAYMENT" ? "−" : "+";
							return el("li", {
								text:
									fmtDate(t.createdAt) +
									" · " +
									(TX[t.type] || t.type) +
									" " +
									sign +
									points(Math.abs(t.amount)) +
									" · balance " +
									points(t.balanceAfter)
							});
						})
					)
				);
			});
		}
		return Promise.all([
			refreshBalance().then(function (b) {
				if (b !== null) bal.textContent = points(b);
			}),
			loadTx()
		]);
	}

	// ---------------------------------------------------------------- ticket, bookings, cancellation, reviews

	function viewTicket(resId, id) {
		return loadReservation(resId).then(function (res) {
			if (!current(id)) return;
			if (res.status === "PENDING" || res.status === "PAYING") return go("#/checkout/" + resId);
			return showOf(res.concertId, res.scheduleId).then(function (sh) {
				if (!current(id)) return;
				var view = page(res.status === "CONFIRMED" ? "Your ticket" : "Your booking");
				var ticket = el(
					"article",
					{ class: "card ticket", id: "ticket", dataset: { status: res.status } },
					el("h2", { text: sh.title }),
					el("p", { class: "artist", text: [sh.artist, sh.venue].filter(Boolean).join(" at ") }),
					el(
						"dl",
						{ class: "facts" },
						el("dt", { text: "Show" }),
						el("dd", { id: "ticket-show", text: fmtDate(sh.startsAt) }),
						el("dt", { text: "Seats" }),
						el("dd", { id: "ticket-seats", text: (res.seats || []).map(s => s.label).join(", ") }),
						el("dt", { text: "Paid" }),
						el("dd", { text: points(res.payment ? res.payment.amount : res.amount) }),
						el("dt", { text: "Status" }),
						el("dd", { id: "ticket-status", text: statusWords(res.status) }),
						el("dt", { text: "Booking" }),
						el("dd", { id: "ticket-reservation", class: "mono", text: res.id }),
						el("dt", { text: "Payment" }),
						el("dd", { id: "ticket-payment", class: "mono", text: res.payment ? res.payment.id : "-" }),
						res.refund ? [el("dt", { text: "Refund" }), el("dd", { id: "ticket-refund", text: points(res.refund.amount) })] : null
					)
				);
				view.appendChild(ticket);
				refreshBalance();
				refreshUnread();
				view.appendChild(el("p", null, el("a", { href: "#/bookings", id: "to-bookings", text: "All my bookings" })));
			});
		});
	}

	function statusWords(s) {
		return (
			{
				PENDING: "Seats held, not paid yet",
				PAYING: "Payment in progress",
				CONFIRMED: "Confirmed",
				CANCELLED: "Cancelled",
				EXPIRED: "Expired (not paid in time)"
			}[s] || s
		);
	}

	function cancelReservation(res) {
		var key = sessionStorage.getItem(K.cancel + res.id);
		if (!key) {
			key = newKey("cancel-" + res.id);
			sessionStorage.setItem(K.cancel + res.id, key);
		}
		return api("POST", "/api/reservations/" + res.id + "/cancel", { headers: { "idempotency-key": key } }).then(
			function (r) {
				sessionStorage.removeItem(K.cancel + res.id);
				return r.data;
			},
			function (err) {
				if (err.status > 0 && err.status < 500 && err.type !== "IDEMPOTENCY_KEY_IN_PROGRESS") sessionStorage.removeItem(K.cancel + res.id);
				throw err;
			}
		);
	}

	function viewBookings(id) {
		var view = page("My bookings");
		var list = el("ul", { id: "booking-list", class: "bookings" });
		view.appendChild(list);
		return api("GET", "/api/reservations?pageSize=50").then(function (r) {
			if (!current(id)) return;
			var rows = rowsOf(r.data);
			if (rows.length === 0) list.appendChild(el("li", { class: "muted", text: "No bookings yet." }));
			rows.forEach(function (res) {
				var head = el("h2", { text: "Booking" });
				var when = el("p", { class: "muted" });
				var status = el("p", { class: "status", dataset: { status: res.status } }, el("strong", { text: statusWords(res.status) }));
				var note = el("p", { class: "note", "aria-live": "polite" });
				var actions = el("div", { class: "actions" });
				var item = el(
					"li",
					{ class: "card booking", dataset: { id: res.id, status: res.status } },
					head,
					when,
					el("p", { text: "Seats " + (res.seats || []).map(s => s.label).join(", ") + " · " + points(res.amount) }),
					status,
					note,
					actions
				);
				if (res.refund) note.textContent = "Refunded " + points(res.refund.amount) + ".";
				list.appendChild(item);
				showOf(res.concertId, res.scheduleId).then(function (sh) {
					head.textContent = sh.title;
					when.textContent = fmtDate(sh.startsAt);
					var past = sh.startsAt && new Date(sh.startsAt).getTime() <= Date.now();
					if (res.status === "CONFIRMED" && past) item.appendChild(reviewForm(res.concertId));
					// Past the cancellation cutoff the server would refuse: say so instead of offering the button.
					var closesAt = sh.startsAt ? new Date(sh.startsAt).getTime() - CANCEL_CUTOFF_MS : Infinity;
					var cancelBtn = actions.querySelector("button.cancel");
					if (res.status === "CONFIRMED" && cancelBtn && closesAt <= Date.now()) {
						cancelBtn.remove();
						note.textContent = "Cancellation closed on " + fmtDate(new Date(closesAt).toISOString()) + ".";
					}
				});
				if (res.status === "PENDING" || res.status === "PAYING")
					actions.appendChild(el("a", { class: "button primary", href: "#/checkout/" + res.id, text: "Pay" }));
				if (res.status === "CONFIRMED") actions.appendChild(el("a", { class: "button", href: "#/ticket/" + res.id, text: "Ticket" }));
				if (res.status === "PENDING" || res.status === "CONFIRMED") {
					var btn = el("button", {
						type: "button",
						class: "danger cancel",
						dataset: { id: res.id },
						text: res.status === "CONFIRMED" ? "Cancel booking (full refund)" : "Release seats"
					});
					busyButton(btn, "Cancelling...", function () {
						return cancelReservation(res).then(function (done) {
							if (!btn.isConnected) return;
							item.dataset.status = done.status || "CANCELLED";
							status.dataset.status = item.dataset.status;
							status.firstChild.textContent = statusWords(item.dataset.status);
							var words = done.refund
								? "Cancelled. " + points(done.refund.amount) + " were refunded to your balance."
								: done.status === "CANCELLED"
									? "Cancelled."
									: "Your cancellation is being processed.";
							note.textContent = words;
							announce(words);
							clear(actions);
							refreshBalance();
						});
					});
					actions.appendChild(btn);
				}
			});
			if (rows.some(x => x.status === "CONFIRMED"))
				view.appendChild(
					el("p", { class: "muted small", text: "A confirmed booking can be cancelled with a full refund until 24 hours before the show." })
				);
		});
	}

	function reviewForm(concertId) {
		var rating = el(
			"select",
			{ name: "rating", class: "review-rating" },
			[5, 4, 3, 2, 1].map(function (n) {
				return el("option", { value: String(n), text: n + (n === 1 ? " star" : " stars") });
			})
		);
		var content = el("textarea", { name: "content", rows: "3", maxlength: "2000", required: true, class: "review-content" });
		var btn = el("button", { type: "submit", text: "Post review" });
		var done = el("p", { class: "muted", "aria-live": "polite" });
		var form = el(
			"form",
			{ class: "review", novalidate: true },
			el("h3", { text: "Write a review" }),
			el("label", { class: "field" }, el("span", { text: "Rating" }), rating),
			el("label", { class: "field" }, el("span", { text: "Your review" }), content),
			btn,
			done
		);
		form.addEventListener("submit", function (ev) {
			ev.preventDefault();
			var text = content.value.trim();
			if (!text) return showAlert("Please write a few words for your review.");
			btn.disabled = true;
			api("POST", "/api/concerts/" + concertId + "/reviews", { body: { rating: Number(rating.value), content: text } })
				.then(
					function () {
						done.textContent = "Thank you! Your review is posted.";
						content.disabled = true;
						rating.disabled = true;
					},
					function (err) {
						showAlert(say(err));
						btn.disabled = false;
					}
				)
				.then(function () {
					if (content.disabled) btn.disabled = true;
				});
		});
		return form;
	}

	// ---------------------------------------------------------------- inbox

	function viewInbox(id) {
		var view = page("Inbox");
		var all = busyButton(el("button", { type: "button", id: "read-all", text: "Mark all as read" }), "Marking...", function () {
			return api("POST", "/api/notifications/read-all").then(function () {
				return load();
			});
		});
		var list = el("ul", { id: "inbox-list", class: "inbox" });
		view.appendChild(all);
		view.appendChild(list);
		function load() {
			return api("GET", "/api/notifications?pageSize=50").then(function (r) {
				if (!current(id)) return;
				clear(list);
				var rows = rowsOf(r.data);
				if (rows.length === 0) list.appendChild(el("li", { class: "muted", text: "No messages yet." }));
				rows.forEach(function (n) {
					var item = el(
						"li",
						{ class: "card note-item" + (n.readAt ? " read" : " unread"), dataset: { id: n.id } },
						el("p", null, el("strong", { text: n.readAt ? "" : "New: " }), n.message),
						el("p", { class: "muted small", text: fmtDate(n.createdAt) })
					);
					if (!n.readAt)
						item.appendChild(
							busyButton(el("button", { type: "button", class: "small", text: "Mark as read" }), "Marking...", function () {
								return api("POST", "/api/notifications/" + n.id + "/read").then(load);
							})
						);
					list.appendChild(item);
				});
				refreshUnread();
			});
		}
		return load();
	}

	// ---------------------------------------------------------------- start

	$("signout").addEventListener("click", function () {
		session.clear();
		$("balance").textContent = "";
		$("unread").textContent = "";
		showAlert("");
		go("#/signin");
	});
	window.addEventListener("hashchange", route);
	if (session.token()) {
		refreshBalance();
		refreshUnread();
	}
	route();
})();
