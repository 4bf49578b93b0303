/** The user service's actions as other contexts call them (type-only; see lib/actions.ts). */
import type { PublicUser } from "./user.domain";

export interface UserApi {
	/** A user's public profile (404 NOT_FOUND when there is none). */
	"user.get": { params: { id: string }; result: PublicUser };
}
