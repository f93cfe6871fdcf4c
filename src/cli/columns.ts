// Plain-text tables of the inspection commands: cells padded to their column's width, two spaces
// apart, trailing blanks trimmed (kubectl's and linkerd's layout).

/** The lines of a table whose first row is the header. */
export function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, c) => (widths[c] = Math.max(widths[c] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}
