"""The values every room speaks: refusal codes (`refusals`) and the messages clients
read (`messages`, `headers` for the language), ID numbers (`certno`, GB 11643), global
IDs (`ids`), channels (`channels`), the Beijing date (`beijing`), callers and their
tokens (`auth`).

Uses `gateway.ops` and `adapters.base`."""
