/** Pure rules of the concert context (services/concert/concert.domain.ts) and the demo catalog's promises. */
import {
	availableSeats,
	generateSeatMap,
	pageWindow,
	parseStartsAt,
	requestedSeatIds,
	seatLabel,
	seatMapProblems,
	seatStatus,
	toIso,
	totalPrice
} from "../../services/concert/concert.domain";
import { DEMO_CATALOG } from "../../services/concert/demo-data";

describe("concert domain", () => {
	it("when a seat map is generated, then labels run A-1.. row by row and grades claim rows from the front", () => {
		const seats = generateSeatMap({
			rows: 3,
			perRow: 4,
			price: 50,
			grades: [{ grade: "VIP", rows: 1, price: 200 }]
		});
		expect(seats).toHaveLength(12);
		expect(seats.map(s => s.label).slice(0, 5)).toEqual(["A-1", "A-2", "A-3", "A-4", "B-1"]);
		expect(seats.filter(s => s.grade === "VIP").map(s => s.label)).toEqual(["A-1", "A-2", "A-3", "A-4"]);
		expect(seats.filter(s => s.grade === "R").every(s => s.price === 50)).toBe(true);
		expect(new Set(seats.map(s => s.label)).size).toBe(12);
		expect(seatLabel(25, 59)).toBe("Z-60");
		expect(() => seatLabel(26, 0)).toThrow(RangeError);
	});

	it("when grades claim more rows than exist, repeat a name or reuse the default grade, then the map is refused", () => {
		expect(seatMapProblems({ rows: 2, perRow: 2, price: 1, grades: [{ grade: "VIP", rows: 3, price: 2 }] })).toHaveLength(1);
		expect(
			seatMapProblems({
				rows: 4,
				perRow: 2,
				price: 1,
				grades: [
					{ grade: "VIP", rows: 1, price: 2 },
					{ grade: "VIP", rows: 1, price: 3 }
				]
			})
		).toHaveLength(1);
		expect(seatMapProblems({ rows: 4, perRow: 2, price: 1, grades: [{ grade: "R", rows: 1, price: 2 }] })).toHaveLength(1);
		expect(seatMapProblems({ rows: 4, perRow: 2, price: 1, grades: [{ grade: "R", rows: 4, price: 2 }] })).toEqual([]);
		expect(seatMapProblems({ rows: 4, perRow: 2, price: 1 })).toEqual([]);
	});

	it("when seat ids repeat, are empty, too many or not key-safe, then 422 VALIDATION_ERROR names seatIds", () => {
		for (const ids of [["a", "a"], [], ["a", "b", "c", "d", "e"], ["a}b"], ["a:b"]]) {
			let err: { code?: number; type?: string; data?: { field: string }[] } | undefined;
			try {
				requestedSeatIds(ids);
			} catch (e) {
				err = e as typeof err;
			}
			expect({ ids, code: err?.code, type: err?.type, field: err?.data?.[0]?.field }).toEqual({
				ids,
				code: 422,
				type: "VALIDATION_ERROR",
				field: "seatIds"
			});
		}
		expect(requestedSeatIds(["a", "b-1", "C_2", "d"])).toEqual(["a", "b-1", "C_2", "d"]);
	});

	it("when paging, then the window starts at (page - 1) * pageSize", () => {
		expect(pageWindow({ page: 1, pageSize: 20 })).toEqual({ offset: 0, limit: 20 });
		expect(pageWindow({ page: 3, pageSize: 7 })).toEqual({ offset: 14, limit: 7 });
	});

	it("when seats are sold and held, then availability subtracts both and never goes negative", () => {
		expect(availableSeats(60, 10, 5)).toBe(45);
		// A seat can be counted twice for a moment (sold, its hold not yet dropped): the count clamps at zero.
		expect(availableSeats(2, 2, 1)).toBe(0);
	});

	it("when a seat is both sold and held, then it reads SOLD: the database wins over a stale lease", () => {
		const sold = new Set(["a"]);
		const held = new Set(["a", "b"]);
		expect(seatStatus("a", sold, held)).toBe("SOLD");
		expect(seatStatus("b", sold, held)).toBe("HELD");
		expect(seatStatus("c", sold, held)).toBe("AVAILABLE");
		expect(totalPrice([{ price: 100 }, { price: 250 }])).toBe(350);
	});

	it("when a start time has no zone or is not a date, then it is refused; SQL times read back as ISO UTC", () => {
		expect(parseStartsAt("2027-01-02T19:30:00Z")?.toISOString()).toBe("2027-01-02T19:30:00.000Z");
		expect(parseStartsAt("2027-01-02T19:30:00+09:00")?.toISOString()).toBe("2027-01-02T10:30:00.000Z");
		for (const bad of ["2027-01-02T19:30:00", "tomorrow", "2027-13-45T99:99:00Z", ""]) expect(parseStartsAt(bad)).toBeUndefined();
		expect(toIso("2027-01-02 19:30:00.000 +00:00")).toBe("2027-01-02T19:30:00.000Z");
		expect(toIso(new Date("2027-01-02T19:30:00Z"))).toBe("2027-01-02T19:30:00.000Z");
	});

	it("when the demo catalog is generated, then it has 3+ concerts, several schedules, 50+ seats of 2+ grades each", () => {
		expect(DEMO_CATALOG.length).toBeGreaterThanOrEqual(3);
		expect(DEMO_CATALOG.reduce((n, c) => n + c.schedules.length, 0)).toBeGreaterThanOrEqual(6);
		expect(new Set(DEMO_CATALOG.map(c => c.venue.name)).size).toBe(DEMO_CATALOG.length);
		for (const c of DEMO_CATALOG) {
			expect(seatMapProblems(c.seats)).toEqual([]);
			const seats = generateSeatMap(c.seats);
			expect(seats.length).toBeGreaterThanOrEqual(50);
			expect(new Set(seats.map(s => s.grade)).size).toBeGreaterThanOrEqual(2);
		}
	});
});
