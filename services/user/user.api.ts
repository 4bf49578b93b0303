/** The user service's actions as other contexts call them (type-only; see lib/actions.ts). */
import type { PublicUser } from "./user.domain";

export interface UserApi {
	/** A user's public profile (404 NOT_FOUND when there is none). */
	"user.get": { params: { id: string }; result: PublicUser };
	/** The profiles of the users that exist among `ids` (up to 500; an unknown id is left out). */
	"user.getMany": { params: { ids: string[] }; result: PublicUser[] };
}
