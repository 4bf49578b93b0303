/**
 * One platform node: Moleculer's own runner (SERVICES=, `--instances` workers, `--repl`, `--hot`, a graceful stop
 * on SIGTERM), with one change: it does not copy environment variables over the configuration.
 *
 * moleculer-runner overwrites every broker option whose name matches a variable (TRANSPORTER, TRACING, NAMESPACE,
 * ...) with the raw string. The transporter we build from TRANSPORTER, NATS_USER/NATS_PASSWORD/NATS_TOKEN and
 * NATS_TLS_* lost its credentials that way (a NATS server with authentication refused every node), and
 * TRACING=console became the string "console" (nothing was traced). lib/config.ts is the one reader of the
 * environment; what moleculer.config.ts builds from it stands.
 *
 *   node -r ts-node/register/transpile-only scripts/node.ts --config moleculer.config.ts --mask "**\/*.service.ts"
 *   node dist/scripts/node.js --config dist/moleculer.config.js        (compiled: npm run cluster, the image)
 */
import { Runner } from "moleculer";

class PlatformRunner extends Runner {
	override overwriteFromEnv(obj: unknown): unknown {
		return obj;
	}
}

new PlatformRunner().start(process.argv);
