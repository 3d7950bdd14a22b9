/** The problems of one file's text (`file` relative to the repository root): `file:line: problem`. */
export function check(file: string, text: string): string[];
