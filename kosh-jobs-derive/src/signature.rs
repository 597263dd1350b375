//! The accepted handler shapes, read from the function's signature:
//!
//! ```text
//! async fn name(payload: Payload) -> Result<T, E>
//! async fn name(payload: Payload, ctx: JobContext<State>) -> Result<T, E>
//! ```
//!
//! The return type is any path ending in `Result` with the success type first
//! (`Result<T, E>`, `anyhow::Result<T>`, `io::Result<T>`), or an alias without arguments whose
//! name ends in `Result` (the compiler then checks it is a `Result`).

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::{FnArg, GenericArgument, PathArguments, ReturnType, Signature, Type};

use crate::errors::Errors;

/// The parts of a valid handler signature the expansion needs.
pub(crate) struct Shape {
    /// The function.
    pub(crate) ident: Ident,
    /// The payload's type: the job type.
    pub(crate) payload: Type,
    /// The state `S` of `JobContext<S>`, if the handler takes a context.
    pub(crate) state: Option<Type>,
    /// What the handler returns.
    pub(crate) ret: Returns,
}

/// The handler's return type.
pub(crate) struct Returns {
    /// As written.
    pub(crate) ty: Type,
    /// The success type `T`, when written out; `None` for an alias without arguments.
    pub(crate) ok: Option<Type>,
}

/// What the signature gives, even when part of it is wrong: the payload type is reported
/// separately so the `Job` implementation can be generated (sparing follow-up errors at the
/// places that enqueue the job) even when the rest of the signature is refused.
pub(crate) struct Checked {
    pub(crate) payload: Option<Type>,
    pub(crate) shape: Option<Shape>,
}

const SHAPES: &str =
    "`async fn name(job: MyJob)` or `async fn name(job: MyJob, ctx: JobContext<App>)`";

/// Checks the signature, recording every problem.
pub(crate) fn check(sig: &Signature, errors: &mut Errors) -> Checked {
    let before = errors.len();
    if let Some(c) = &sig.constness {
        errors.spanned(c, "a job handler cannot be `const`");
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "a job handler must be an `async fn`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        errors.spanned(
            u,
            "a job handler cannot be `unsafe`: the worker calls it without an `unsafe` block",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a job handler cannot have an `extern` ABI");
    }
    let generic = !sig.generics.params.is_empty() || sig.generics.where_clause.is_some();
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a job handler cannot be generic: its payload and state must be concrete types, \
             since the worker finds the handler by the job's name",
        );
    } else if let Some(w) = &sig.generics.where_clause {
        errors.spanned(w, "a job handler cannot have a `where` clause");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "a job handler cannot be variadic");
    }

    let mut typed = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => errors.spanned(
                r,
                format!("a job handler cannot take `self`: write a free function, {SHAPES}"),
            ),
            FnArg::Typed(t) => typed.push(t),
        }
    }
    let has_receiver = typed.len() != sig.inputs.len();

    let payload = match typed.first() {
        Some(first) if is_context(&first.ty) => {
            errors.spanned(
                &first.ty,
                format!(
                    "the first parameter of a job handler is its payload, the context comes \
                     second: {SHAPES}"
                ),
            );
            None
        }
        Some(first) => payload_type(&first.ty, errors),
        None if has_receiver => None,
        None => {
            errors.at(
                sig.paren_token.span.join(),
                format!("a job handler takes its payload as the first parameter: {SHAPES}"),
            );
            None
        }
    };

    let state = match typed.get(1) {
        Some(second) => context_state(&second.ty, errors),
        None => None,
    };
    for extra in typed.iter().skip(2) {
        errors.spanned(
            extra,
            format!(
                "a job handler takes at most two parameters, the payload and the context: \
                 {SHAPES}"
            ),
        );
    }

    let ret = returns(sig, errors);

    // A generic function's payload may name its parameters; a method would put the
    // generated items inside its `impl` block: generate nothing for either.
    let payload = if generic || has_receiver {
        None
    } else {
        payload
    };
    let shape = match (&payload, ret) {
        (Some(payload), Some(ret)) if errors.len() == before => Some(Shape {
            ident: sig.ident.clone(),
            payload: payload.clone(),
            state,
            ret,
        }),
        _ => None,
    };
    Checked { payload, shape }
}

fn payload_type(ty: &Type, errors: &mut Errors) -> Option<Type> {
    match ty {
        Type::Reference(r) => {
            errors.spanned(
                r,
                format!(
                    "a job handler takes its payload by value: write `{}`",
                    r.elem.to_token_stream()
                ),
            );
            None
        }
        Type::ImplTrait(t) => {
            errors.spanned(
                t,
                "the payload must be a concrete type, the job type, e.g. `job: ImportCsv`",
            );
            None
        }
        Type::Infer(t) => {
            errors.spanned(t, "write the payload's type, e.g. `job: ImportCsv`");
            None
        }
        other => Some(other.clone()),
    }
}

/// The last segment of a path type, with its arguments.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn is_context(ty: &Type) -> bool {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    last_segment(ty).is_some_and(|s| s.ident == "JobContext")
}

/// The `S` of `ctx: JobContext<S>`.
fn context_state(ty: &Type, errors: &mut Errors) -> Option<Type> {
    let expected = "the second parameter of a job handler is its context, `JobContext<S>` with \
                    the worker's state type written out, e.g. `ctx: JobContext<App>`";
    if let Type::Reference(r) = ty {
        if is_context(ty) {
            errors.spanned(
                r,
                format!(
                    "a job handler takes its context by value: write `{}`",
                    r.elem.to_token_stream()
                ),
            );
            return None;
        }
    }
    let Some(seg) = last_segment(ty).filter(|s| s.ident == "JobContext") else {
        errors.spanned(ty, expected);
        return None;
    };
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a,
        _ => {
            errors.spanned(
                ty,
                "name the worker's state type: `JobContext<App>` (`JobContext<()>` for none)",
            );
            return None;
        }
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), args.args.len()) {
        (Some(state), None, 1) => Some(state.clone()),
        _ => {
            errors.spanned(ty, expected);
            None
        }
    }
}

fn returns(sig: &Signature, errors: &mut Errors) -> Option<Returns> {
    let expected = "a job handler must return `Result<(), E>`, or `Result<T, E>` to store a \
                    result `T`";
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        ReturnType::Default => {
            errors.at(
                span_after_params(sig),
                format!("{expected}: add e.g. `-> Result<(), MyError>`"),
            );
            return None;
        }
    };
    let Some(seg) = last_segment(ty).filter(|s| s.ident.to_string().ends_with("Result")) else {
        errors.spanned(ty, format!("{expected}, not `{}`", ty.to_token_stream()));
        return None;
    };
    let ok = match &seg.arguments {
        PathArguments::None => None,
        PathArguments::AngleBracketed(a) => match a.args.first() {
            Some(GenericArgument::Type(Type::ImplTrait(t))) => {
                errors.spanned(
                    t,
                    "the result of a job handler must be a named type (it is stored as the \
                     job's result), not `impl Trait`",
                );
                return None;
            }
            Some(GenericArgument::Type(t)) if a.args.len() <= 2 => Some(t.clone()),
            _ => {
                errors.spanned(ty, format!("{expected}, not `{}`", ty.to_token_stream()));
                return None;
            }
        },
        PathArguments::Parenthesized(_) => {
            errors.spanned(ty, expected);
            return None;
        }
    };
    Some(Returns { ty: ty.clone(), ok })
}

/// Where a missing return type would go: the closing parenthesis of the parameters.
fn span_after_params(sig: &Signature) -> Span {
    sig.paren_token.span.close()
}
