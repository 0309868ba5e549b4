//! Flink SQL's window table functions in sqlparser's terms: sqlparser reads
//! `FROM TABLE(TUMBLE(bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))` but not
//! Flink's `TUMBLE(TABLE bids, ...)`, so the tokens are rewritten before
//! parsing, keeping every other token's place for error messages.
//!
//! - `TABLE name` as a function argument (after `(`, `,` or `=>`) becomes `name`;
//! - `name PARTITION BY key` or `PARTITION BY (k1, k2)` (`SESSION`'s keys)
//!   becomes `name, PARTITION_BY(key)`.

use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, TokenizerError, Word};

/// The name of the function that carries `SESSION`'s `PARTITION BY` keys.
pub const PARTITION_BY: &str = "PARTITION_BY";

/// The tokens of `sql`, with Flink's table-argument syntax rewritten.
pub fn tokens(dialect: &dyn Dialect, sql: &str) -> Result<Vec<TokenWithSpan>, TokenizerError> {
    let tokens = Tokenizer::new(dialect, sql).tokenize_with_location()?;
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut skip = vec![false; tokens.len()];
    for (n, &i) in significant.iter().enumerate() {
        if skip[i] {
            continue;
        }
        let previous = n.checked_sub(1).map(|p| &tokens[significant[p]].token);
        let next = significant.get(n + 1).map(|&j| &tokens[j].token);
        let argument_start = matches!(previous, Some(Token::LParen | Token::Comma | Token::RArrow));
        if is_keyword(&tokens[i].token, Keyword::TABLE)
            && argument_start
            && matches!(next, Some(Token::Word(_)))
        {
            // `TABLE name` as an argument: keep `name` only, then look for `PARTITION BY`.
            let name = significant[n + 1];
            out.push(tokens[name].clone());
            skip[name] = true;
            let after: Vec<usize> = significant[n + 2..].to_vec();
            if let [partition, by, rest @ ..] = after.as_slice() {
                if is_keyword(&tokens[*partition].token, Keyword::PARTITION)
                    && is_keyword(&tokens[*by].token, Keyword::BY)
                {
                    skip[*partition] = true;
                    skip[*by] = true;
                    let span = tokens[*partition].span;
                    let at = |token: Token| TokenWithSpan { token, span };
                    out.push(at(Token::Comma));
                    out.push(at(Token::Word(Word {
                        value: PARTITION_BY.to_string(),
                        quote_style: None,
                        keyword: Keyword::NoKeyword,
                    })));
                    // A single key gets the parentheses a list already has.
                    let single =
                        !matches!(rest.first().map(|&j| &tokens[j].token), Some(Token::LParen));
                    if single {
                        out.push(at(Token::LParen));
                        if let Some(&key) = rest.first() {
                            out.push(tokens[key].clone());
                            skip[key] = true;
                        }
                        out.push(at(Token::RParen));
                    }
                }
            }
            continue;
        }
        out.push(tokens[i].clone());
    }
    Ok(out)
}

/// Whether `token` is the unquoted keyword `keyword`.
fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;

    fn rewritten(sql: &str) -> String {
        tokens(&GenericDialect {}, sql)
            .unwrap()
            .iter()
            .map(|t| t.token.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn table_arguments_lose_their_keyword_and_session_keys_become_an_argument() {
        assert_eq!(
            rewritten("FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND))"),
            "FROM TABLE ( TUMBLE ( bid , DESCRIPTOR ( ts ) , INTERVAL '1' SECOND ) )"
        );
        assert_eq!(
            rewritten("TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(ts), x))"),
            "TABLE ( SESSION ( bid , PARTITION_BY ( bidder ) , DESCRIPTOR ( ts ) , x ) )"
        );
        assert_eq!(
            rewritten("SESSION(TABLE bid PARTITION BY (a, b), y)"),
            "SESSION ( bid , PARTITION_BY ( a , b ) , y )"
        );
        assert_eq!(
            rewritten("CUMULATE(DATA => TABLE bid)"),
            "CUMULATE ( DATA => bid )"
        );
        assert_eq!(rewritten("SELECT a FROM t"), "SELECT a FROM t");
    }
}
