//! Per-host variables for playbooks: `host`, `inventory`, `facts` and `vars` (given by the
//! command, e.g. the deploy's PostgreSQL version), used to expand `{{ … }}`
//! in task arguments and to evaluate `when:` expressions (minijinja, strict undefined).

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::facts::Facts;
use crate::inventory::{Host, Inventory};
use crate::playbook::ModuleSpec;

/// The expression environment.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

/// The variables a task of `host` sees.
pub fn context(inv: &Inventory, host: &Host, vars: &serde_json::Value, facts: &Facts) -> Value {
    let roles: Vec<&str> = host.roles.iter().map(|r| r.as_str()).collect();
    minijinja::context! {
        host => minijinja::context! {
            name => host.name.as_str(),
            address => host.address.to_string(),
            dc => host.dc.as_str(),
            roles => roles,
        },
        inventory => Value::from(minijinja::value::Serde(inv)),
        facts => Value::from(minijinja::value::Serde(facts)),
        vars => Value::from(minijinja::value::Serde(vars)),
    }
}

fn expand_value(env: &Environment<'_>, ctx: &Value, v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        serde_json::Value::String(s) if s.contains("{{") || s.contains("{%") => {
            serde_json::Value::String(env.render_str(&s, ctx).map_err(|e| format!("in `{s}`: {e}"))?)
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.into_iter()
                .map(|x| expand_value(env, ctx, x))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, x) in o {
                out.insert(k, expand_value(env, ctx, x)?);
            }
            serde_json::Value::Object(out)
        }
        other => other,
    })
}

/// The module spec with every `{{ … }}` in its strings expanded for this host.
pub fn expand(env: &Environment<'_>, ctx: &Value, spec: &ModuleSpec) -> Result<ModuleSpec, String> {
    let v = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let v = expand_value(env, ctx, v)?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Evaluates a `when:` expression.
pub fn when(env: &Environment<'_>, ctx: &Value, expr: &str) -> Result<bool, String> {
    let e = env.compile_expression(expr).map_err(|e| format!("`{expr}`: {e}"))?;
    e.eval(ctx).map(|v| v.is_true()).map_err(|e| format!("`{expr}`: {e}"))
}
