#!/usr/bin/env python3
"""Writes a synthetic pipeline of about N stages, for the `mlp check` benchmark.

    python3 bench/gen_pipeline.py 1000 OUT.mlp

Each chain is a source (12 columns) with its check, a split, transforms and
feature blocks that build on each other, a ridge model with a search space, an
evaluation with gates and a slice, and a deployment: every kind of declaration
the checker handles, with expressions of every kind.
"""
import sys

def chain(i, stages):
    out = []
    out.append(f'''source s{i} = csv("data/s{i}.csv") {{
    id   : int
    day  : date "%Y-%m-%d"
    city : category["a", "b", "c", "d"]
    kind : category
''' + ''.join(f"    x{j}   : float?\n" for j in range(6)) + '''    y    : float
}''')
    out.append(f'''check s{i} {{
    unique id
    not_null id, y
    range x0 0..1000
    values kind in ["p", "q", "r"]
    expect y >= 0
    warn null_rate x1 <= 0.1
}}''')
    out.append(f"split d{i} = s{i} {{ train = 0.7  valid = 0.1  test = 0.2  seed = {i}  key = id }}")
    prev = f"d{i}"
    n = 3
    k = 0
    while n < stages - 3:
        if k % 2 == 0:
            name = f"t{i}_{k}"
            if k == 0:
                body = "    impute " + ", ".join(f"x{j}" for j in range(6)) + " with median\n    encode city, kind with onehot\n    scale x0, x1 with standard"
            else:
                body = f"    clip x{k % 6} to 0..100\n    scale f{i}_{k-1}_a with robust"
            out.append(f"transform {name} = {prev} {{\n{body}\n}}")
        else:
            name = f"f{i}_{k}"
            out.append(f'''features {name} = {prev} {{
    f{i}_{k}_a = ln(x0 + 1) * x{k % 6} + if x2 > 3 then 1.0 else 0.0
    f{i}_{k}_b = month(day) + day_of_week(day)
    f{i}_{k}_c = mean(x3) over city
    f{i}_{k}_d = coalesce(x4, 0.0) / (abs(x5) + 1)
}}''')
        prev = name
        n += 1
        k += 1
    out.append(f'''model m{i} = ridge({prev}) {{
    target  = y
    exclude = id, day
    alpha   = [0.1, 1.0, 10.0]
    tune {{ cv = 5  metric = rmse }}
}}''')
    out.append(f'''evaluate m{i} on test {{
    metrics rmse, mae, r2
    require r2 >= 0.5
    slice city {{ require gap(mae) < 100 }}
}}''')
    out.append(f'deploy m{i} as "model-{i}" {{ alias = "production" }}')
    return out

def main():
    total = int(sys.argv[1])
    path = sys.argv[2]
    per_chain = 20
    decls = []
    i = 0
    while len(decls) < total:
        decls.extend(chain(i, min(per_chain, total - len(decls))))
        i += 1
    with open(path, "w") as f:
        f.write(f"# synthetic pipeline: {len(decls)} declarations\n\n")
        f.write("\n\n".join(decls) + "\n")
    print(f"{path}: {len(decls)} declarations")

if __name__ == "__main__":
    main()
