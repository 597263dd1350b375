//! Code generation: the user's function unchanged, plus the `Job` and `Handler`
//! implementations a user could write by hand.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

use crate::args::{self, Args};
use crate::backoff::BackoffSpec;
use crate::errors::Errors;
use crate::signature::{self, Shape};
use crate::unique::Unique;
use crate::validate;

/// Expands `#[job(args)] item`. Never fails: mistakes become `compile_error!`s placed beside
/// the user's item, which is emitted unchanged so that it produces no follow-up errors.
pub(crate) fn job(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.spanned(
                first_token(&item),
                "#[job] goes on the job's handler, an `async fn`, e.g. \
                 `async fn import_csv(job: ImportCsv) -> Result<(), ImportError>`",
            );
            // Still parse the arguments, to report their mistakes in the same compilation.
            let _ = args::parse(args, &mut errors);
            let errs = errors.to_compile_errors();
            return quote! { #errs #item };
        }
    };

    let args = args::parse(args, &mut errors);
    let checked = signature::check(&func.sig, &mut errors);

    let name = match &args.name {
        Some(lit) => Some((lit.value(), lit.span())),
        None if args.name_given => None,
        None => {
            let ident = syn::ext::IdentExt::unraw(&func.sig.ident);
            let name = ident.to_string();
            validate::default_job_name(&name, ident.span(), &mut errors)
                .then(|| (name, func.sig.ident.span()))
        }
    };
    let queue = args.queue.as_ref();

    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kosh_jobs));
    let p = Ident::new("__kosh_jobs", Span::call_site());

    // The handler's success type is the job's `Output`; `()` while the signature is too
    // broken to tell (no handler is generated then, so nothing depends on it).
    let output = checked
        .shape
        .as_ref()
        .map(|shape| output_type(&p, shape))
        .unwrap_or_else(|| quote! { () });
    let job_impl = match (&checked.payload, &name) {
        (Some(payload), Some((name, _))) => {
            Some(job_impl(&p, payload, name, queue, &output, &args))
        }
        _ => None,
    };
    let handler_impl = match (&checked.shape, errors.is_empty()) {
        (Some(shape), true) => Some(handler_impl(&p, shape, &output)),
        _ => None,
    };
    let name_guard = match (&checked.payload, &name) {
        (Some(_), Some((name, span))) => Some(name_guard(name, *span)),
        _ => None,
    };
    let errs = errors.to_compile_errors();
    let check = job_impl
        .as_ref()
        .and(checked.payload.as_ref())
        .map(|payload| payload_check(&p, payload));
    let impls = match (job_impl, handler_impl) {
        (None, None) => TokenStream::new(),
        (j, h) => quote! {
            const _: () = {
                use #krate::__private as #p;
                #j
                #h
                #check
            };
        },
    };
    quote! {
        #errs
        #func
        #name_guard
        #impls
    }
}

/// An item named after the job name, so two jobs with the same name in one module are a
/// compile error ("the name `__kosh_jobs_duplicate_job_name__x` is defined multiple times")
/// pointing at the second name. Clashes across modules are caught when the worker is built.
fn name_guard(name: &str, span: Span) -> TokenStream {
    let ident = Ident::new(&guard_ident(name), span);
    quote_spanned! {span=>
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #ident: () = ();
    }
}

/// An identifier unique to each valid job name (ASCII letters, digits, `-`, `_`, `.`, `:`).
fn guard_ident(name: &str) -> String {
    const PREFIX: &str = "__kosh_jobs_duplicate_job_name_";
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{PREFIX}_{name}")
    } else {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}x_{hex}")
    }
}

fn job_impl(
    p: &Ident,
    payload: &syn::Type,
    name: &str,
    queue: Option<&LitStr>,
    output: &TokenStream,
    args: &Args,
) -> TokenStream {
    let queue = queue.map(|q| quote! { const QUEUE: &'static str = #q; });
    let mut opts = Vec::new();
    if let Some((n, span)) = args.max_attempts {
        let n = Literal::u32_suffixed(n);
        opts.push(quote_spanned! {span=> .max_attempts(#n) });
    }
    if let Some(b) = &args.backoff {
        let b = backoff(p, b);
        opts.push(quote! { .backoff(#b) });
    }
    if let Some(t) = &args.timeout {
        let ms = Literal::u64_suffixed(t.millis);
        opts.push(quote_spanned! {t.span=> .timeout(#p::Duration::from_millis(#ms)) });
    }
    if let Some((n, span)) = args.priority {
        let n = Literal::i32_suffixed(n);
        opts.push(quote_spanned! {span=> .priority(#n) });
    }
    let options = (!opts.is_empty()).then(|| {
        quote! {
            fn options() -> #p::JobOptions {
                #p::JobOptions::new() #(#opts)*
            }
        }
    });
    let unique = args.unique.as_ref().map(|u| unique_key(p, name, u));
    let group = args.group.as_ref().map(|g| group_key(p, g));
    let progress = args.progress.as_ref().map(|ty| {
        quote_spanned! {ty.span()=>
            impl #p::JobProgress for #payload
            where
                for<'__kosh_jobs> #payload: #p::Job,
                for<'__kosh_jobs> #ty: #p::ProgressType,
            {
                type Progress = #ty;
            }
            const _: fn() = #p::assert_progress::<#ty>;
        }
    });
    let schedule = args.cron.as_ref().map(|cron| {
        let tz = args
            .tz
            .as_ref()
            .map_or_else(|| quote! { "UTC" }, |z| quote! { #z });
        // The payload of a declared schedule's job is its `Default`: without one, the error
        // points at `cron`.
        quote_spanned! {cron.span()=>
            fn declared_schedule() -> #p::Option<#p::DeclaredSchedule<Self>> {
                #p::Some(#p::DeclaredSchedule {
                    cron: #cron,
                    tz: #tz,
                    payload: <Self as #p::Default>::default(),
                })
            }
        }
    });
    quote! {
        // The payload's and the result's bounds are assumed here and checked once each, with
        // one message, by `assert_payload` and `assert_output` (see `payload_check` and
        // `handler_impl`).
        impl #p::Job for #payload
        where
            for<'__kosh_jobs> #payload: #p::Payload,
            for<'__kosh_jobs> #output: #p::Output,
        {
            const NAME: &'static str = #name;
            #queue
            type Output = #output;
            #options
            #unique
            #group
            #schedule
        }
        #progress
    }
}

fn backoff(p: &Ident, b: &BackoffSpec) -> TokenStream {
    let ms = |d: &crate::duration::Dur| Literal::u64_suffixed(d.millis);
    let j = |j: &f64| Literal::f64_suffixed(*j);
    match b {
        BackoffSpec::None => quote! { #p::backoff_none() },
        BackoffSpec::Fixed { delay, jitter } => {
            let (d, j) = (ms(delay), j(jitter));
            quote! { #p::backoff_fixed(#d, #j) }
        }
        BackoffSpec::Linear { step, max, jitter } => {
            let (s, m, j) = (ms(step), ms(max), j(jitter));
            quote! { #p::backoff_linear(#s, #m, #j) }
        }
        BackoffSpec::Exponential { base, max, jitter } => {
            let (b, m, j) = (ms(base), ms(max), j(jitter));
            quote! { #p::backoff_exponential(#b, #m, #j) }
        }
    }
}

fn unique_key(p: &Ident, name: &str, u: &Unique) -> TokenStream {
    let key = match u {
        Unique::Format { lit, fields } => {
            let span = lit.span();
            let args = fields.iter().map(|f| quote_spanned! {span=> #f = self.#f });
            quote_spanned! {span=> #p::format!(#lit, #(#args),*) }
        }
        Unique::Field(field) => {
            let prefix = format!("{name}:{{}}");
            quote_spanned! {field.span()=> #p::format!(#prefix, self.#field) }
        }
    };
    quote! {
        fn unique_key(&self) -> #p::Option<#p::String> {
            #p::Some(#key)
        }
    }
}

/// `group = user_id` is the field's value as text (not prefixed with the job's name: jobs of
/// several types in one queue share a user's group); a format string is used verbatim.
fn group_key(p: &Ident, g: &Unique) -> TokenStream {
    let key = match g {
        Unique::Format { lit, fields } => {
            let span = lit.span();
            let args = fields.iter().map(|f| quote_spanned! {span=> #f = self.#f });
            quote_spanned! {span=> #p::format!(#lit, #(#args),*) }
        }
        Unique::Field(field) => quote_spanned! {field.span()=> #p::format!("{}", self.#field) },
    };
    quote! {
        fn group_key(&self) -> #p::Option<#p::String> {
            #p::Some(#key)
        }
    }
}

/// The handler's success type, as written or through `HandlerResult` for an alias.
fn output_type(p: &Ident, shape: &Shape) -> TokenStream {
    match &shape.ret.ok {
        Some(t) => t.to_token_stream(),
        None => {
            let ty = &shape.ret.ty;
            quote_spanned! {ty.span()=> <#ty as #p::HandlerResult>::Ok }
        }
    }
}

fn handler_impl(p: &Ident, shape: &Shape, output: &TokenStream) -> TokenStream {
    let Shape {
        ident,
        payload,
        state,
        ret,
    } = shape;
    // As for the payload: the result's bounds are assumed here and checked once, at the
    // result type, by `assert_output`.
    let output_check = quote_spanned! {output.span()=>
        let _: fn() = #p::assert_output::<#output>;
    };
    // Errors about the handler's error type point at its return type, and errors about its
    // future (not `Send`) at its name.
    let ctx = Ident::new("__kosh_jobs_ctx", Span::mixed_site());
    let result = Ident::new(
        "__kosh_jobs_result",
        Span::mixed_site().located_at(ret.ty.span()),
    );
    let call = match state {
        Some(_) => quote! { #ident(self, #ctx).await },
        None => quote! { #ident(self).await },
    };
    let (generics, state, ctx_param) = match state {
        Some(state) => (None, state.to_token_stream(), quote! { #ctx }),
        None => (
            Some(quote! { <__KoshJobsState> }),
            quote! { __KoshJobsState },
            quote! { _ },
        ),
    };
    let state_bounds = generics
        .is_some()
        .then(|| quote! { __KoshJobsState: #p::Send + #p::Sync + 'static, });
    let at = ident.span();
    let p_at = Ident::new(&p.to_string(), at);
    let run = quote_spanned! {at=>
        async fn run(
            self,
            #ctx_param: #p_at::JobContext<#state>,
        ) -> #p_at::Result<Self::Output, #p_at::JobError> {
            let #result = #call;
            #p::job_result(#result)
        }
    };
    quote! {
        impl #generics #p::Handler<#state> for #payload
        where
            #state_bounds
            for<'__kosh_jobs> #payload: #p::Job,
            for<'__kosh_jobs> #output: #p::Output,
        {
            #run
        }
        #output_check
    }
}

/// Checks the payload's bounds once, at the payload's type (see `job_impl`).
fn payload_check(p: &Ident, payload: &syn::Type) -> TokenStream {
    quote_spanned! {payload.span()=>
        let _: fn() = #p::assert_payload::<#payload>;
    }
}

/// The first token of `item`, for an error about the item as a whole.
fn first_token(item: &TokenStream) -> TokenStream {
    item.clone().into_iter().take(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: &str, item: &str) -> String {
        let args: TokenStream = args.parse().expect("test input lexes");
        let item: TokenStream = item.parse().expect("test input lexes");
        job(args, item).to_string()
    }

    const HANDLER: &str = "async fn f(job: P) -> Result<(), E> { Ok(()) }";

    #[test]
    fn odd_input_gives_errors_not_panics() {
        let cases = [
            "= 5",
            "queue = \"a\" \"b\"",
            "queue = ",
            ",",
            "queue = \"a\",, name = \"b\"",
            "backoff = exponential(, max = 1s)",
            "backoff = exponential(1s, max = 2s,,)",
            "backoff = exponential(1s, max = 2s, jitter = 1e400)",
            "backoff = exponential(1s, max = 2s, jitter = -0.5)",
            "backoff = exponential(1s, max = 2s, jitter = 0.5f32)",
            "backoff = exponential(max = 1s)",
            "backoff = exponential()",
            "backoff = exponential[1s]",
            "backoff = exponential(1s, max = 2s) + 1",
            "backoff = none(1s)",
            "backoff = 5",
            "backoff = fixed(1s, max = 2s, cap = 3s)",
            "unique = \"{\"",
            "unique = \"}\"",
            "unique = \"{a{b}\"",
            "unique = \"{r#type}\"",
            "unique = \"\"",
            "unique = 5",
            "crate = \"\"",
            "crate = \"a::\"",
            "priority = --5",
            "priority = 2147483648",
            "priority = -2147483649",
            "max_attempts = 99999999999999999999",
            "max_attempts = -1",
            "max_attempts = 3u8",
            "timeout = 18446744073709551615d",
            "timeout = 1.5s",
            "timeout = 1e3s",
            "timeout = -1s",
            "timeout = \"15 minutes\"",
            "name = \"ünïcode\"",
            "queue = \":x\"",
        ];
        for args in cases {
            let out = expand(args, HANDLER);
            assert!(
                out.contains("compile_error"),
                "no error for `{args}`: {out}"
            );
            assert!(out.contains("async fn f"), "item dropped for `{args}`");
        }
        let items = [
            "struct S;",
            "fn f() {}",
            "async fn f(self) {}",
            "async fn f<T>(job: T, ctx: JobContext) -> Result {}",
            "async fn f(job: P, ctx: JobContext<A, B>) -> Result<> {}",
            "async fn f(job: P) -> Result<impl Serialize, E> {}",
            "async fn f(job: P) -> Result(u8) {}",
            "async fn f(job: _, ctx: &JobContext<A>) -> Result<(), E> {}",
            "async fn f(job: impl Job) -> Result<(), E> {}",
            "async fn f(job: P, ctx: JobContext<'a>) -> Result<(), E> {}",
            "async unsafe extern \"C\" fn f(job: P) -> Result<(), E> {}",
            "async fn 名前(job: P) -> Result<(), E> {}",
        ];
        for item in items {
            let out = expand("", item);
            assert!(
                out.contains("compile_error"),
                "no error for `{item}`: {out}"
            );
        }
    }

    #[test]
    fn valid_input_gives_no_errors() {
        for args in [
            "",
            "queue = \"q\", name = \"n.v1\", max_attempts = 1, priority = -2147483648",
            "backoff = fixed(0s), timeout = 1ms, unique = id",
            "backoff = linear(1ms, max = 30d, jitter = 1), unique = \"{{}}-{a:?}-{a}\"",
            "crate = \"crate::x::kosh_jobs\",",
        ] {
            let out = expand(args, HANDLER);
            assert!(!out.contains("compile_error"), "error for `{args}`: {out}");
            assert!(out.contains("__kosh_jobs :: Handler <"), "{out}");
        }
    }

    #[test]
    fn guard_idents_differ_for_different_names() {
        let names = ["a_b", "a-b", "a.b", "a:b", "x_61", "x_2d", "a__b"];
        let idents: std::collections::HashSet<String> =
            names.iter().map(|n| guard_ident(n)).collect();
        assert_eq!(idents.len(), names.len());
        for i in &idents {
            assert!(syn::parse_str::<Ident>(i).is_ok(), "{i}");
        }
    }
}
