/**
 * Driving a REPL process in a test: type a line, wait until what it printed after that line matches.
 */
import type { ChildProcess } from "child_process";
import { waitFor } from "./harness";

/** Types `line` into the REPL and waits until its output after it matches `until`; answers that output. */
export async function replCommand(repl: ChildProcess, output: () => string, line: string, until: RegExp, timeoutMs = 15_000): Promise<string> {
	const from = output().length;
	repl.stdin!.write(`${line}\n`);
	await waitFor(() => until.test(output().slice(from)), timeoutMs, `REPL output of "${line}" to match ${until} (got: ${output().slice(from)})`);
	return output().slice(from);
}
