/**
 * Go's encoding/json reading of a request body, as etcd's HTTP handlers and its gateway read
 * them (json.Decoder, json.Unmarshal): JSON values with each number's text kept, and Go's
 * syntax error texts (`invalid character 'x' looking for beginning of value`, `unexpected EOF`).
 * Apart from jsonpb.ts, which maps the values onto protobuf messages, so that the handlers that
 * read JSON without the gateway do not load @bufbuild/protobuf (see ARCHITECTURE, "Startup").
 */

/** A request body that is not a request its method takes: grpc-gateway answers InvalidArgument with `message`. */
export class JsonDecodeError extends Error {}

/** A parsed JSON value that keeps each number's text (Go decodes 64-bit integers from it exactly). */
export type RawJson =
  | { kind: 'object'; fields: Map<string, RawJson> }
  | { kind: 'array'; items: RawJson[] }
  /** `raw`: the text between the quotes as written, escapes and all (jsonpb reads quoted integers from it). */
  | { kind: 'string'; value: string; raw: string }
  | { kind: 'number'; text: string }
  | { kind: 'bool'; value: boolean }
  | { kind: 'null' };

/** strconv.Quote's escapes of the named control characters. */
const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '\\': '\\\\' };

/**
 * Go's `quoteChar`: how its JSON scanner shows an offending byte `c` (one char of the latin1
 * text the parser reads), as `strconv.Quote` shows that byte taken as a rune: `'Ã'` for the
 * first byte of `é`, `'\x00'`, `'\u0085'`.
 */
function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return '\'"\'';
  const code = c.charCodeAt(0);
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
  if (NAMED_ESCAPES[c] !== undefined) return `'${NAMED_ESCAPES[c]}'`;
  if (code < 0x20 || code === 0x7f) return `'\\x${hex(code, 2)}'`;
  // Not printable for Go: the C1 controls, no-break space and soft hyphen.
  if ((code >= 0x80 && code <= 0xa0) || code === 0xad) return `'\\u${hex(code, 4)}'`;
  return `'${c}'`;
}

/** Thrown at the end of the input; callers turn it into Go's wording for their mode. */
class EndOfInput extends Error {}

/** A recursive-descent JSON parser with Go's scanner's error texts. */
class Parser {
  pos = 0;
  constructor(private readonly text: string) {}

  private fail(c: string, context: string): never {
    throw new JsonDecodeError(`invalid character ${quoteChar(c)} ${context}`);
  }

  skipSpace(): void {
    while (this.pos < this.text.length && ' \t\n\r'.includes(this.text[this.pos]!)) this.pos++;
  }

  private peek(): string {
    if (this.pos >= this.text.length) throw new EndOfInput();
    return this.text[this.pos]!;
  }

  value(): RawJson {
    this.skipSpace();
    const c = this.peek();
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') {
      const start = this.pos;
      const value = this.string();
      return { kind: 'string', value, raw: this.text.slice(start + 1, this.pos - 1) };
    }
    if (c === '-' || (c >= '0' && c <= '9')) return { kind: 'number', text: this.number() };
    if (c === 't') return this.literal('true', { kind: 'bool', value: true });
    if (c === 'f') return this.literal('false', { kind: 'bool', value: false });
    if (c === 'n') return this.literal('null', { kind: 'null' });
    this.fail(c, 'looking for beginning of value');
  }

  private object(): RawJson {
    this.pos++;
    const fields = new Map<string, RawJson>();
    this.skipSpace();
    if (this.peek() === '}') {
      this.pos++;
      return { kind: 'object', fields };
    }
    for (;;) {
      this.skipSpace();
      const c = this.peek();
      if (c !== '"') this.fail(c, 'looking for beginning of object key string');
      const key = this.string();
      this.skipSpace();
      if (this.peek() !== ':') this.fail(this.peek(), 'after object key');
      this.pos++;
      fields.set(key, this.value());
      this.skipSpace();
      const next = this.peek();
      this.pos++;
      if (next === '}') return { kind: 'object', fields };
      if (next !== ',') this.fail(next, 'after object key:value pair');
    }
  }

  private array(): RawJson {
    this.pos++;
    const items: RawJson[] = [];
    this.skipSpace();
    if (this.peek() === ']') {
      this.pos++;
      return { kind: 'array', items };
    }
    for (;;) {
      items.push(this.value());
      this.skipSpace();
      const next = this.peek();
      this.pos++;
      if (next === ']') return { kind: 'array', items };
      if (next !== ',') this.fail(next, 'after array element');
    }
  }

  private string(): string {
    const start = this.pos;
    this.pos++;
    for (;;) {
      const c = this.peek();
      if (c === '"') break;
      if (c === '\\') {
        this.pos++;
        const e = this.peek();
        if (e === 'u') {
          for (let i = 1; i <= 4; i++) {
            this.pos++;
            const h = this.peek();
            if (!/[0-9a-fA-F]/.test(h)) this.fail(h, 'in \\u hexadecimal character escape');
          }
        } else if (!'"\\/bfnrt'.includes(e)) this.fail(e, 'in string escape code');
      } else if (c < ' ') this.fail(c, 'in string literal');
      this.pos++;
    }
    this.pos++;
    // The text holds bytes (latin1): runs of non-ASCII bytes are UTF-8, invalid ones U+FFFD as
    // Go decodes them; escapes are ASCII and left to JSON.parse.
    const literal = this.text.slice(start, this.pos).replace(/[\x80-\xff]+/g, (run) => Buffer.from(run, 'latin1').toString('utf8'));
    return JSON.parse(literal) as string;
  }

  private number(): string {
    const start = this.pos;
    const digits = (): void => {
      while (this.pos < this.text.length && this.text[this.pos]! >= '0' && this.text[this.pos]! <= '9') this.pos++;
    };
    if (this.text[this.pos] === '-') {
      this.pos++;
      const c = this.peek();
      if (!(c >= '0' && c <= '9')) this.fail(c, 'in numeric literal');
    }
    if (this.text[this.pos] === '0') this.pos++;
    else digits();
    if (this.text[this.pos] === '.') {
      this.pos++;
      const c = this.peek();
      if (!(c >= '0' && c <= '9')) this.fail(c, 'after decimal point in numeric literal');
      digits();
    }
    if (this.text[this.pos] === 'e' || this.text[this.pos] === 'E') {
      this.pos++;
      if (this.text[this.pos] === '+' || this.text[this.pos] === '-') this.pos++;
      const c = this.peek();
      if (!(c >= '0' && c <= '9')) this.fail(c, 'in exponent of numeric literal');
      digits();
    }
    return this.text.slice(start, this.pos);
  }

  private literal<T extends RawJson>(word: string, value: T): T {
    for (let i = 0; i < word.length; i++) {
      const c = this.peek();
      if (c !== word[i]) this.fail(c, `in literal ${word} (expecting ${quoteChar(word[i]!)})`);
      this.pos++;
    }
    return value;
  }
}

/**
 * The JSON values of a request body (`text`: its bytes as a latin1 string, so errors name
 * bytes as Go's scanner does), read one after another as Go's json.Decoder reads them:
 * `values` holds those complete so far; `error` is the syntax error that stopped the reading
 * (Go's texts, `unexpected EOF` for a value cut short by the end of a finished body); `rest` is
 * where an unfinished value starts when `final` is false (more of the body may come).
 */
export function readJsonValues(text: string, final: boolean): { values: RawJson[]; rest: number; error?: JsonDecodeError } {
  const values: RawJson[] = [];
  const parser = new Parser(text);
  for (;;) {
    parser.skipSpace();
    const start = parser.pos;
    if (start >= text.length) return { values, rest: start };
    try {
      const value = parser.value();
      // A number that ends the text so far may go on in the body's next bytes.
      if (!final && value.kind === 'number' && parser.pos === text.length) return { values, rest: start };
      values.push(value);
    } catch (err) {
      if (err instanceof EndOfInput) {
        if (!final) return { values, rest: start };
        return { values, rest: start, error: new JsonDecodeError('unexpected EOF') };
      }
      if (err instanceof JsonDecodeError) return { values, rest: start, error: err };
      throw err;
    }
  }
}

/** Go's json.Unmarshal of a whole text (the inside of a quoted number): its value or its syntax error. */
export function unmarshalText(text: string): RawJson {
  const parser = new Parser(text);
  let value: RawJson;
  try {
    value = parser.value();
  } catch (err) {
    if (err instanceof EndOfInput) throw new JsonDecodeError('unexpected end of JSON input');
    throw err;
  }
  parser.skipSpace();
  if (parser.pos < text.length) throw new JsonDecodeError(`invalid character ${quoteChar(text[parser.pos]!)} after top-level value`);
  return value;
}
