//! The `#[job(...)]` attribute of kosh-jobs. Use it through `kosh_jobs::job`.

use proc_macro::TokenStream;

/// Turns an async handler function into a job type. See `kosh_jobs::job`.
#[proc_macro_attribute]
pub fn job(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    quote::quote! {
        ::core::compile_error!("#[job] is not implemented yet");
        #item
    }
    .into()
}
