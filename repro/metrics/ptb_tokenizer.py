"""Stanford's PTBTokenizer in Python, as pycocoevalcap runs it (``-preserveLines -lowerCase``).

Lets the caption metrics run without Java with the same tokens, hence the same BLEU, ROUGE-L and
CIDEr-D (tests/test_caption_metrics.py checks this on the real Flickr8k test captions).
"""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------
# PTBTokenizer in Python: the rules of Stanford's PTBLexer (stanford-corenlp 3.4.1, the jar
# pycocoevalcap ships) that captions meet. Checked token for token against the jar on all 40,460
# Flickr8k, 29,000 Multi30k, 82,797 MSVD captions and 142,787 Tatoeba English sentences: identical
# after punctuation removal. On random strings of letters and symbols 3% of lines still differ
# (runs of mixed quotes, "<" before an e-mail address, ...): the jar stays the reference.
# ---------------------------------------------------------------------------------------------
SUPERSCRIPT_SUBSCRIPT, FRACTION = "\u00b2\u00b3\u00b9\u2070-\u209f", "\u00bc-\u00be\u2153-\u215e"
# Unicode counts those as alphanumeric, PTBLexer does not.
LETTER = rf"[^\W\d_{SUPERSCRIPT_SUBSCRIPT}{FRACTION}]"
ALNUM = rf"[^\W_{SUPERSCRIPT_SUBSCRIPT}{FRACTION}]"
NOT_LETTER = r"(?:[\W\d_]|$)"
APOS = "['\u2019\u0092\u00b4]"
APOS_ANY = "['\u2019\u0092\u00b4`\u0091\u2018\u201b]"
NUM = r"(?:\d*(?:[.,:]\d+)+|\d+(?:[.:,]\d+)*)"
WORD = rf"{LETTER}{ALNUM}*(?:[.!?]{LETTER}{ALNUM}*)*"  # "dog.cat" is one token in PTBLexer
CONTRACTION = rf"{APOS}(?:[msd]|re|ve|ll)"
# Abbreviations that keep their period, as measured on the 3.4.1 jar (the capitalised ones are
# abbreviations only when capitalised: "ill." is a word and a period, "Ill." is Illinois).
ABBREVIATION = (
    "jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|mon|tues?|wed|thu|thurs|fri|ala|ariz|calif|colo|conn|ct|"
    "dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn|tenn|va|vt|wisc?|wyo|inc|cos?|corp|"
    "pt[ye]s?|ltd|plc|rt|bancorp|bhd|assn|univ|intl|sys|tel|est|ext|sq|jr|sr|bros|esq|etc|al|seq|bldg|blvd|"
    "rd|mrs?|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|capt|ste?|"
    "ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft|adj|adv|asst|assoc|ens|insp|mlle|mme|msgr|sfc|"
    "vs|alex|wm|jos|cie|cf|treas|ph|invt|elec|natl|m[ft]g|dept|(?-i:Az|Ark|Del|Ill|La|Mass|Miss|Ore|Pa|Tex|Wash)"
)
# A one-letter "X." before one of these words ends a sentence, so its period is split off.
SENTENCE_START = (
    "About|According|Additionally|After|An|A|As|At|But|Did|During|Earlier|He|Her|Here|How|However|If|In|It|"
    r"Last|Many|More|Mr\.|Ms\.|Now|Once|One|Other|Our|She|Since|So|Some|Such|That|The|Their|Then|There|"
    "These|They|This|We|When|While|What|Who|Why|Yet|You"
)


def _latex_quotes(token: str) -> str:
    return token.lower().translate(str.maketrans("\u2019\u0092\u00b4\u2018\u0091\u201b", "'''```"))


def _lower_ampersand(token: str) -> str:
    return token.lower().replace("&amp;", "&")


def _smiley(token: str) -> str:
    return token.lower().replace("(", "-lrb-").replace(")", "-rrb-")


# (token, trailing context, output) in PTBLexer's rule order. As in JFlex, the longest match wins
# with its trailing context counted, and the earlier rule wins a tie; output None = the token text.
RULES = [
    (r"c\+\+|[cf]#", "", None),
    ("can(?=not)|gon(?=na)|got(?=ta)|lem(?=me)|gim(?=me)|wan(?=na)|'t(?=is|was)", "not|na|ta|me|is|was", None),
    ("&(?:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", "", "--"),
    ("&amp;", "", "&"),
    (WORD, rf"{CONTRACTION}(?!{LETTER})", None),  # "dog" of "dog's"
    (rf"{LETTER}*[a-mo-z]", rf"n{APOS_ANY}t", None),  # "do" of "don't"
    (WORD, "", None),
    *[(word, "", None) for word in (  # words with an apostrophe inside
        rf"{APOS}n{APOS}?", rf"[ldj]{APOS}", rf"(?:dunkin|somethin|ol){APOS}", rf"{APOS}(?:em|till?|cause|[2-9]0s)",
        rf"diff{APOS_ANY}rent", rf"(?-i:[A-HJ-XZn]){APOS_ANY}{LETTER}{{2,}}", rf"c{APOS}est",
        "c'mon|e'er|s'mores|ev'ry|li'l|nat'l|nor'easter",
        rf"{LETTER}+(?-i:[aeiouyAEIOUY]){APOS_ANY}(?-i:[aeiouA-Z]){LETTER}*")],
    (rf"y{APOS}", LETTER, None),
    (r"(?:https?|ftp|mailto)://[^\s\"<>|(){}\[\]]*[^\s\"'<>|.!?(){},;:&\[\]-]", "", None),
    (r"(?:www\.(?:[^\s\"<>|.!?(){},]+\.)+[a-z]{2,4}|(?:[^\s\"`'<>|.!?(){},\-_$]+\.)+(?:com|net|org|edu))"
     r"(?:/[^\s\"<>|()]*[^\s\"<>|.!?(){},-])?", "", None),
    (r"[a-z0-9][^\s\"<>|(){}]*@(?:[^\s\"<>|(){}.]+\.)*[^\s\"<>|(){}\[\].,;:]+", "", None),  # e-mail
    (rf"#{LETTER}+|@[a-z_][a-z_0-9]*", "", None),  # hashtag, user name
    (CONTRACTION, NOT_LETTER, _latex_quotes),
    (rf"n{APOS_ANY}t", NOT_LETTER, _latex_quotes),
    (r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}", "", None),
    (rf"[-+]?{NUM}", "", None),
    (r"(?:\d{1,4}[- \u00a0])?\d{1,4}\\?/\d{1,4}", "", None),
    (rf"{ALNUM}+(?:-{LETTER}+){{0,2}}(?:\\?/{ALNUM}+(?:-{LETTER}+){{0,2}}){{1,2}}", "", None),  # and/or
    (r"(?-i:[A-Z]*)\$|#", "", None),
    (LETTER, rf"\.\s+(?-i:{SENTENCE_START})[\s?!]", None),
    (r"(?:ca|figs?|prop|nos?|arts?|pp|op)\.", r"\s?\d", None),
    (rf"(?:{ABBREVIATION}|{LETTER}(?:\.{LETTER})*)\.", "", None),  # "mr.", "u.s.", "a."
    (rf"{LETTER}(?:\.{LETTER})*", r"\s", None),
    (rf"{APOS}\d\d", r"\s", None),
    (rf"{WORD}\.", "[,;:]", None),
    (rf"(?:[dol]{APOS_ANY}{ALNUM})?(?:[-+]?{NUM}(?!{ALNUM})|{ALNUM}+)"  # hyphenated: "t-shirt", "o'clock"
     rf"(?:[-_\u2010\u2011](?:[dol]{APOS_ANY}{ALNUM})?(?:{NUM}(?!{ALNUM})|{ALNUM}+))*", "", None),
    (r"(?-i:[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+)", "", _lower_ampersand),  # "A&M"
    ("[\"`'\u2018-\u201f\u0082\u0084\u0091-\u0094\u2039\u203a\u00ab\u00bb]{1,2}", "", "'"),  # any quote
    (r"[<>]?[:;=][-o*']?[()dpo\\{@|\[\]]", r"[\W_]|$", _smiley),
    (r"\(", "", "-lrb-"), (r"\)", "", "-rrb-"), (r"\[", "", "-lsb-"), (r"\]", "", "-rsb-"),
    (r"\{", "", "-lcb-"), (r"\}", "", "-rcb-"),
    (f"[{SUPERSCRIPT_SUBSCRIPT}]+", "", None),
    (f"[{FRACTION}]", "", None),
    (r"-{3,4}", "", "--"),
    ("\\.\\.\\.+|[\u0085\u2026]", "", "..."),
    (r"-+|@+|#+|_+|\*+|[?!]+|[.,;:=/]", "", None),
    ("[^\\w\\s\U00010000-\U0010ffff]", "", None),  # other symbols stand alone; emoji are deleted
    ("[ \t\u00a0\u2000-\u200b\u200e\u200f\u3000\ufeff\r\u2028\u2029\u000b\u000c\u0085]+", "", ""),
]
SYMBOL_OUTPUT = {"\u20ac": "$", "\u00a3": "#", "\u00a2": "cents", "\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4",
                 "\u2153": "1/3", "\u2154": "2/3"}
# Every rule is tried at once, each in a lookahead group, so one match call gives all their lengths.
LEXER = re.compile("".join(f"(?:(?=(({token})(?:{context}))))?" for token, context, _ in RULES), re.IGNORECASE)
# Plain words between spaces are most of a caption and no other rule could take them.
PLAIN_WORD = re.compile(rf" +|(?!(?:cannot|gonna|gotta|lemme|gimme|wanna)(?:[ \n]|$)){LETTER}+(?=[ \n]|$)", re.I)
LINE_BREAKS = re.compile("[\n\r\u2028\u2029\u000b\u000c\u0085]")


def ptb_tokenize_lines(lines: list[str]) -> list[list[str]]:
    """PTBTokenizer ``-preserveLines -lowerCase`` on these lines, punctuation kept: one token list per line.

    The lines are lexed as one text, as the jar does, because a rule's trailing context may look
    into the next line.
    """
    text = "\n".join(lines).replace("\u00ad", "")  # soft hyphens vanish inside PTBLexer's words
    tokens, position = [[]], 0
    while position < len(text):
        if text[position] == "\n":
            tokens.append([])
            position += 1
            continue
        plain = PLAIN_WORD.match(text, position)
        if plain:
            position = plain.end()
            if plain.group()[0] != " ":
                tokens[-1].append(plain.group().lower())
            continue
        spans = LEXER.match(text, position).regs
        lengths = [end - start for start, end in spans[1::2]]
        rule = lengths.index(max(lengths))  # the longest, and the first rule of those
        if lengths[rule] <= 0:  # untokenizable: PTBTokenizer deletes it
            position += 1
            continue
        start, position = spans[2 * rule + 2]
        token, output = text[start:position], RULES[rule][2]
        output = SYMBOL_OUTPUT.get(token, token.lower()) if output is None else output
        output = output(token) if callable(output) else output
        if output:
            tokens[-1].append(output)
    return tokens
