/**
 * The demo catalog `npm start` shows on a fresh install: three concerts, each with several schedules of a
 * graded 60-seat map (VIP, R, S). Seeded only into an empty catalog; see `seedDemoCatalog` in catalog.repo.ts.
 */
import type { SeatMapSpec } from "./concert.domain";

export interface CatalogInput {
	title: string;
	artist: string;
	venue: { name: string };
	schedules: { startsAt: Date }[];
	seats: SeatMapSpec;
	/** When sales open and close; absent: open now, closing at each show's start. */
	sales?: { opensAt: Date | null; closesAt: Date | null };
}

const GRADED_60: SeatMapSpec = {
	rows: 6,
	perRow: 10,
	price: 99_000,
	grades: [
		{ grade: "VIP", rows: 2, price: 154_000 },
		{ grade: "S", rows: 2, price: 121_000 }
	]
};

export const DEMO_CATALOG: CatalogInput[] = [
	{
		title: "Midnight Frequencies World Tour",
		artist: "The Night Owls",
		venue: { name: "Olympic Hall (demo)" },
		schedules: [{ startsAt: new Date("2027-03-13T10:00:00Z") }, { startsAt: new Date("2027-03-14T09:00:00Z") }],
		seats: GRADED_60
	},
	{
		title: "Spring Symphony Gala",
		artist: "Seoul Philharmonic Ensemble",
		venue: { name: "Arts Center Concert Hall (demo)" },
		schedules: [
			{ startsAt: new Date("2027-04-03T10:30:00Z") },
			{ startsAt: new Date("2027-04-04T06:00:00Z") },
			{ startsAt: new Date("2027-04-04T11:00:00Z") }
		],
		seats: {
			rows: 6,
			perRow: 10,
			price: 70_000,
			grades: [
				{ grade: "VIP", rows: 1, price: 180_000 },
				{ grade: "S", rows: 2, price: 120_000 }
			]
		}
	},
	{
		title: "Indie Night Live",
		artist: "Paper Lanterns",
		venue: { name: "Rolling Hall (demo)" },
		schedules: [{ startsAt: new Date("2027-05-22T11:00:00Z") }, { startsAt: new Date("2027-05-23T08:00:00Z") }],
		seats: {
			rows: 5,
			perRow: 12,
			price: 55_000,
			grades: [{ grade: "S", rows: 2, price: 77_000 }]
		}
	}
];
