/** The problems `loadConfig` lists for an environment (none: `[]`), for the configuration tests. */
import { ConfigError, loadConfig } from "../../lib/config";

export function problemsOf(env: Record<string, string>): string[] {
	try {
		loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) return err.problems;
		throw err;
	}
	return [];
}
