/**
 * oned's template text parser, as far as image templates go: the lexer rules of
 * src/parsers/template_parser.l and the actions of template_syntax.y (names upper-cased by
 * Attribute, `\"` unescaped, a value with `]]>` aborts the parse). Vector attributes are
 * refused loudly: the adapter never sends them, and a test that made it do so should fail.
 */
export class TemplateSyntaxError extends Error {}

export function parseTemplate(text: string): Map<string, string> {
  if (text.trimStart().startsWith('<'))
    throw new TemplateSyntaxError('XML templates are not implemented by the OpenNebula double');
  const out = new Map<string, string>();
  let i = 0;
  let line = 1;
  const fail = (message: string): never => {
    throw new TemplateSyntaxError(`${message} at line ${line}, columns ${i}:${i + 1}`);
  };
  while (i < text.length) {
    // Blanks, newlines and comment lines.
    const skip = /(?:[ \t\n]+|[ \t]*#[^\n]*\n?)/y;
    skip.lastIndex = i;
    const blank = skip.exec(text);
    if (blank && blank[0].length > 0) {
      line += blank[0].split('\n').length - 1;
      i += blank[0].length;
      continue;
    }
    const nameRe = /[A-Za-z0-9_]+/y;
    nameRe.lastIndex = i;
    const name = nameRe.exec(text)?.[0];
    if (name === undefined) fail(`syntax error, unexpected "${text[i]}"`);
    i += name!.length;
    const equal = /[ \t]*=[ \t]*/y;
    equal.lastIndex = i;
    const eq = equal.exec(text);
    if (!eq) fail('syntax error, expecting EQUAL');
    i += eq![0].length;
    const rest = text.slice(i, text.indexOf('\n', i) === -1 ? text.length : text.indexOf('\n', i));
    let value: string;
    if (i >= text.length || text[i] === '\n') {
      value = '';
    } else if (rest.includes(']]>')) {
      fail('syntax error, unexpected CCDATA');
      value = '';
    } else if (text[i] === '"') {
      // flex takes the longest match: an escaped quote keeps the string going.
      const quoted = /"((?:\\"|[^"])*)"/y;
      quoted.lastIndex = i;
      const m = quoted.exec(text);
      if (!m) fail('syntax error, unterminated string');
      value = m![1]!.replaceAll('\\"', '"');
      line += m![0].split('\n').length - 1;
      i += m![0].length;
    } else if (text[i] === '[') {
      fail('vector attributes are not implemented by the OpenNebula double');
      value = '';
    } else {
      const bare = /[^=#\s,[\]]+/y;
      bare.lastIndex = i;
      value = bare.exec(text)?.[0] ?? fail(`syntax error, unexpected "${text[i]}"`);
      i += value.length;
    }
    out.set(name!.toUpperCase(), value);
  }
  return out;
}
