"""Synthetic tool-calling tasks for the CPU demo and the tests: a library of 30 tools in ten domains, queries
filled from templates, and records of four cases (CASES: one call, one of several candidate tools, parallel calls,
no applicable tool), all seeded.
"""
import copy
import json
import random
import re

# ----------------------------------------------------------------------------------------------------------------
# Synthetic tool-calling tasks for the CPU demo and the tests

CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Dublin", "Vienna",
          "Prague", "Lisbon", "Athens", "Seoul", "Delhi", "Sydney", "Toronto", "Chicago", "Boston", "Denver",
          "Miami", "Austin", "Seattle", "Nairobi", "Istanbul", "Bangkok", "Hanoi", "Zurich", "Warsaw"]
NAMES = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jack", "Kenji", "Lena",
         "Marco", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Xena", "Yusuf",
         "Zoe", "Liam", "Maya", "Noah", "Ivy"]
PHRASES = ["running late", "see you soon", "call me back", "on my way", "happy birthday", "thanks for lunch",
           "the meeting moved", "good luck today", "dinner is ready", "I landed safely"]
EVENTS = ["team meeting", "dentist visit", "yoga class", "project review", "lunch break", "piano lesson"]
FOODS = ["pizza", "sushi", "tacos", "salad", "noodles", "burger", "soup", "curry", "pasta", "rice"]
ITEMS = ["headphones", "lamps", "backpacks", "keyboards", "socks", "mugs", "chargers", "notebooks"]
CURRENCIES = {"dollars": "USD", "euros": "EUR", "pounds": "GBP", "yen": "JPY", "francs": "CHF", "rupees": "INR"}
LANGUAGES = {"French": "fr", "Spanish": "es", "German": "de", "Italian": "it", "Japanese": "ja", "Korean": "ko"}
TICKERS = {"Apple": "AAPL", "Microsoft": "MSFT", "Amazon": "AMZN", "Tesla": "TSLA", "Nvidia": "NVDA",
           "Netflix": "NFLX", "Intel": "INTC", "IBM": "IBM"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


# Samplers: rng -> (text in the query, argument value). Where the two differ the model has to compute or map.

def _same(pool):
    def sample(rng):
        value = rng.choice(pool)
        return value, value
    return sample


def _mapped(mapping):  # e.g. "euros" -> "EUR"
    return lambda rng: rng.choice(list(mapping.items()))


def _number(lo, hi):
    def sample(rng):
        k = rng.randint(lo, hi)
        return str(k), k
    return sample


def _price(rng):
    cents = rng.randint(100, 9999)
    return f"{cents / 100:.2f}", cents / 100  # always a float, even 12.0: argument types are scored


def _percent(rng):
    p = rng.choice([10, 12, 15, 18, 20, 25])
    return f"{p}%", p / 100


def _days(rng):
    return rng.choice([("tomorrow", 1), ("in a week", 7), ("in two weeks", 14)] +
                      [(f"in {k} days", k) for k in range(2, 10)])


def _minutes(rng):
    h, m = rng.randint(2, 5), rng.randint(5, 59)
    return rng.choice([(f"{h} hours", 60 * h), (f"{m} minutes", m), ("an hour", 60), ("half an hour", 30)])


def _date(rng):
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    return f"{MONTHS[month - 1]} {day}", f"2025-{month:02d}-{day:02d}"


def _time(rng):
    hour, half = rng.randint(1, 12), rng.choice(["am", "pm"])
    return f"{hour} {half}", f"{hour % 12 + (12 if half == 'pm' else 0):02d}:00"


def _email(rng):
    name = rng.choice(NAMES)
    return name, name.lower() + "@example.com"


def _pair(pool):
    def sample(rng):
        a, b = rng.sample(pool, 2)
        return f"{a} and {b}", [a, b]
    return sample


def _flight(rng):
    code = rng.choice(["AA", "BA", "LH", "AF", "UA"]) + str(rng.randint(100, 999))
    return code, code


def _guests(rng):
    adults, kids = rng.randint(1, 4), rng.randint(0, 3)
    return f"{adults} adults" + (f" and {kids} kids" if kids else ""), {"adults": adults, "children": kids}


def _contact(rng):
    name, phone = rng.choice(NAMES), f"555-{rng.randint(1000, 9999)}"
    return f"{name}, phone {phone}", {"name": name, "phone": phone}


STRING, INTEGER, NUMBER = {"type": "string"}, {"type": "integer"}, {"type": "number"}
STRINGS = {"type": "array", "items": STRING}
# kind -> (sampler, JSON schema of the value; a "description" here is a format hint added to the parameter's)
KINDS = {
    "city": (_same(CITIES), STRING), "name": (_same(NAMES), STRING), "email": (_email, STRING),
    "phrase": (_same(PHRASES), STRING), "event": (_same(EVENTS), STRING), "food": (_same(FOODS), STRING),
    "item": (_same(ITEMS), STRING), "flight": (_flight, STRING),
    "int": (_number(1, 100), INTEGER), "small": (_number(1, 9), INTEGER), "year": (_number(1980, 2024), INTEGER),
    "days": (_days, INTEGER), "minutes": (_minutes, INTEGER), "price": (_price, NUMBER), "percent": (_percent, NUMBER),
    "date": (_date, {"type": "string", "description": "YYYY-MM-DD"}),
    "time": (_time, {"type": "string", "description": "HH:MM, 24h"}),
    "currency": (_mapped(CURRENCIES), {"type": "string", "description": "ISO code"}),
    "language": (_mapped(LANGUAGES), {"type": "string", "description": "ISO 639-1 code"}),
    "ticker": (_mapped(TICKERS), STRING),
    "names2": (_pair(NAMES), STRINGS), "foods2": (_pair(FOODS), STRINGS),
    "guests": (_guests, {"type": "object", "properties": {"adults": INTEGER, "children": INTEGER}}),
    "contact": (_contact, {"type": "object", "properties": {"name": STRING, "phone": STRING}}),
}

# (name, domain, description, "param[?]:kind:description; ...", query templates). `?` marks an optional param.
# Templates name params as {param}, or fix a value with {param=<json>} (no text). Tools of one domain overlap in
# meaning, so a no-call case never offers a tool from the query's own domain.
TOOL_SPECS = [
    ("get_weather", "weather", "Get the current weather in a city.",
     "city:city:City name; unit?:enum(celsius,fahrenheit):Temperature unit",
     ["What's the weather in {city}?", "Weather in {city} in {unit}, please.", "Is it raining in {city} now?"]),
    ("get_forecast", "weather", "Get the weather forecast for a future day.",
     "city:city:City name; days_ahead:days:Days from today",
     ["What will the weather be in {city} {days_ahead}?", "Forecast for {city} {days_ahead}."]),
    ("convert_currency", "money", "Convert an amount between currencies.",
     "amount:price:Amount; from_currency:currency:Source code; to_currency:currency:Target code",
     ["Convert {amount} {from_currency} to {to_currency}.", "How many {to_currency} is {amount} {from_currency}?"]),
    ("get_stock_price", "money", "Get the latest stock price.", "symbol:ticker:Ticker symbol",
     ["What is {symbol} stock trading at?", "Show me the share price of {symbol}."]),
    ("calculate_tip", "money", "Compute a restaurant tip.", "bill:price:Bill amount; rate:percent:Tip rate 0-1",
     ["What is a {rate} tip on {bill}?", "Tip {rate} on a bill of {bill}."]),
    ("book_flight", "travel", "Book a flight.",
     "origin:city:From; destination:city:To; date:date:Day; cabin?:enum(economy,business):Cabin",
     ["Book a flight from {origin} to {destination} on {date}.",
      "Fly me {cabin} from {origin} to {destination} on {date}."]),
    ("check_flight_status", "travel", "Check a flight's status.", "flight_number:flight:Flight code",
     ["Is flight {flight_number} on time?", "Status of flight {flight_number}?"]),
    ("book_hotel", "travel", "Reserve a hotel room.",
     "city:city:City; nights:small:Nights; guests:guests:Guest counts; breakfast?:bool:Include breakfast",
     ["Book a hotel in {city} for {nights} nights for {guests}.",
      "I need a room in {city}, {nights} nights, {guests}, with breakfast{breakfast=true}."]),
    ("get_directions", "travel", "Get route directions.",
     "origin:city:Start; destination:city:End; mode?:enum(driving,walking,transit):Travel mode",
     ["How do I get from {origin} to {destination}?", "Directions from {origin} to {destination} by {mode}."]),
    ("send_email", "messaging", "Send an email.", "to:email:Address; subject:phrase:Subject line",
     ["Email {to} with subject {subject}.", "Send {to} an email titled {subject}."]),
    ("send_message", "messaging", "Send a text message.", "recipient:name:Contact name; text:phrase:Message",
     ["Text {recipient}: {text}.", "Tell {recipient} {text}."]),
    ("create_contact", "messaging", "Save a new contact.", "contact:contact:Name and phone",
     ["Add a contact: {contact}.", "Save {contact} to my contacts."]),
    ("set_timer", "clock", "Start a countdown timer.", "minutes:minutes:Duration in minutes",
     ["Set a timer for {minutes}.", "Start a {minutes} timer."]),
    ("set_alarm", "clock", "Set an alarm.", "time:time:Alarm time; label?:phrase:Label",
     ["Wake me up at {time}.", "Set an alarm for {time} called {label}."]),
    ("create_event", "calendar", "Add a calendar event.", "title:event:Title; date:date:Day; time?:time:Start",
     ["Add {title} to my calendar on {date}.", "Schedule {title} on {date} at {time}."]),
    ("schedule_meeting", "calendar", "Invite people to a meeting.",
     "attendees:names2:People; date:date:Day; duration?:minutes:Minutes",
     ["Set up a meeting with {attendees} on {date}.", "Book {duration} with {attendees} on {date}."]),
    ("create_reminder", "calendar", "Create a reminder.", "text:phrase:What; days_from_now:days:When",
     ["Remind me {days_from_now} that {text}.", "Set a reminder {days_from_now}: {text}."]),
    ("translate_text", "language", "Translate text.", "text:phrase:Text; target_language:language:Language code",
     ["Translate '{text}' into {target_language}.", "How do you say '{text}' in {target_language}?"]),
    ("search_restaurants", "food", "Find restaurants.",
     "city:city:City; cuisine:enum(italian,chinese,mexican,indian,thai):Cuisine; max_results?:small:Limit",
     ["Find {cuisine} restaurants in {city}.", "Show {max_results} {cuisine} places in {city}."]),
    ("order_food", "food", "Order food for delivery.", "dishes:foods2:Dishes; quantity?:small:Portions each",
     ["Order {dishes} for delivery.", "Get me {quantity} portions each of {dishes}."]),
    ("search_recipes", "food", "Find recipes.", "ingredient:food:Main ingredient; max_minutes?:minutes:Time limit",
     ["Find a recipe with {ingredient}.", "A {ingredient} recipe under {max_minutes}, please."]),
    ("add_to_cart", "shopping", "Add a product to the cart.", "item:item:Product; quantity:small:Count",
     ["Add {quantity} {item} to my cart.", "Put {item} in the cart, quantity {quantity}."]),
    ("track_package", "shopping", "Track a package.", "order_id:int:Order number",
     ["Where is my order {order_id}?", "Track order number {order_id}."]),
    ("play_music", "media", "Play music.", "genre:enum(jazz,rock,pop,classical,hiphop):Genre; volume?:int:0-100",
     ["Play some {genre}.", "Play {genre} at volume {volume}."]),
    ("find_movies", "media", "Search movies.", "genre:enum(comedy,drama,horror,action):Genre; year?:year:Year",
     ["Recommend a {genre} movie.", "Find {genre} movies from {year}."]),
    ("get_news", "media", "Get news headlines.",
     "topic:enum(sports,politics,tech,science):Topic; count?:small:How many",
     ["Any {topic} news today?", "Give me {count} {topic} headlines."]),
    ("set_thermostat", "home", "Set the thermostat.", "temperature:int:Degrees; room?:enum(bedroom,kitchen):Room",
     ["Set the heating to {temperature} degrees.", "Make the {room} {temperature} degrees."]),
    ("turn_on_lights", "home", "Turn on lights.", "room:enum(bedroom,kitchen,garage):Room; brightness?:int:Percent",
     ["Turn on the {room} lights.", "Lights in the {room} at {brightness}% please."]),
    ("get_population", "facts", "Get a city's population.", "city:city:City name",
     ["How many people live in {city}?", "Population of {city}?"]),
    ("get_distance", "facts", "Distance between two cities in km.", "origin:city:From; destination:city:To",
     ["How far is {origin} from {destination}?", "Distance from {origin} to {destination}?"]),
]


def _parse_params(spec: str) -> dict:
    params = {}
    for part in spec.split(";"):
        name, kind, desc = (s.strip() for s in part.split(":", 2))
        params[name.rstrip("?")] = {"kind": kind, "description": desc, "required": not name.endswith("?")}
    return params


def _param_schema(param: dict) -> dict:
    kind = param["kind"]
    if kind.startswith("enum("):
        schema = {"type": "string", "enum": kind[5:-1].split(",")}
    elif kind == "bool":
        schema = {"type": "boolean"}
    else:
        schema = dict(KINDS[kind][1])
    note = schema.pop("description", None)  # a format hint from KINDS, e.g. YYYY-MM-DD
    schema["description"] = param["description"] + (f" ({note})" if note else "")
    return schema


def _build_library() -> list[dict]:
    library = []
    for name, domain, desc, spec, templates in TOOL_SPECS:
        params = _parse_params(spec)
        schema = {"name": name, "description": desc, "parameters": {
            "type": "object", "properties": {p: _param_schema(v) for p, v in params.items()},
            "required": [p for p, v in params.items() if v["required"]]}}
        library.append({"name": name, "domain": domain, "params": params, "templates": templates, "schema": schema})
    return library


TOOL_LIBRARY = _build_library()
_SLOT = re.compile(r"\{(\w+)(?:=([^{}]*))?\}")


def fill_template(rng: random.Random, tool: dict, template: str) -> tuple[str, dict]:
    """(query, arguments): each {param} gets a sampled value; two slots of one kind never share a value."""
    args, used = {}, set()

    def fill(match):
        pname, fixed = match.group(1), match.group(2)
        if fixed is not None:
            args[pname] = json.loads(fixed)
            return ""
        kind = tool["params"][pname]["kind"]
        for _ in range(20):
            sample = _same(kind[5:-1].split(",")) if kind.startswith("enum(") else KINDS[kind][0]
            text, value = sample(rng)
            if json.dumps(value) not in used:
                break
        used.add(json.dumps(value))
        args[pname] = value
        return text

    query = _SLOT.sub(fill, template)
    args = {p: args[p] for p in tool["params"] if p in args}  # schema order, so SFT targets read consistently
    return re.sub(r"\s+([,.?!])", r"\1", " ".join(query.split())), args


def _sample_call(rng, tool) -> tuple[str, dict]:
    query, args = fill_template(rng, tool, rng.choice(tool["templates"]))
    return query, {"name": tool["name"], "arguments": args}


def _distractors(rng, library, needed: list[dict], k: int, avoid_domains=()) -> list[dict]:
    names = {t["name"] for t in needed}
    pool = [t for t in library if t["name"] not in names and t["domain"] not in avoid_domains]
    return rng.sample(pool, min(k, len(pool)))


def _join(q1: str, q2: str, rng) -> str:
    return f"{q1} {rng.choice(['Also,', 'And', 'Then'])} {q2[0].lower() + q2[1:]}"


def _synthetic_case(rng, case: str, max_tools: int, library) -> tuple[str, list[dict], list[dict]]:
    """(query, offered tools, answer) for one case type."""
    tool = rng.choice(library)
    query, call = _sample_call(rng, tool)
    if case == "no_call":
        offered = _distractors(rng, library, [tool], rng.randint(1, max_tools), avoid_domains={tool["domain"]})
        if not offered:  # a tool subset with a single domain has nothing unrelated to offer
            raise ValueError("no_call cases need tools from at least two domains; add tools or set p_no_call=0")
        return query, offered, []
    if case == "parallel":
        other = tool
        if max_tools > 1 and rng.random() >= 0.5:
            other = (_distractors(rng, library, [tool], 1) or [tool])[0]
        required = [p for p, v in tool["params"].items() if v["required"]]
        for _ in range(20):  # the same tool twice must differ in a required value, or the query reads as one call
            query2, call2 = _sample_call(rng, other)
            if other is not tool or any(call2["arguments"][p] != call["arguments"][p] for p in required):
                break
        needed = [tool] if other is tool else [tool, other]
        offered = needed + _distractors(rng, library, needed, rng.randint(0, max_tools - len(needed)))
        return _join(query, query2, rng), offered, [call, call2]
    extra = rng.randint(1, max_tools - 1) if case == "multiple" else 0
    return query, [tool] + _distractors(rng, library, [tool], extra), [call]


def synthetic_records(n: int, seed: int = 0, max_tools: int = 3, p_parallel: float = 0.2, p_no_call: float = 0.1,
                      p_multiple: float = 0.4, tools=None) -> list[dict]:
    """n seeded tool-calling records with short queries and 1..max_tools offered tools.

    Case types, recorded in record["case"]: "single" (only the right tool offered), "multiple" (several tools,
    one right), "parallel" (two calls), "no_call" (no offered tool fits; answer []). All records carry
    allow_empty_call when p_no_call > 0, so the prompt itself does not give the no-call cases away.
    tools: names of TOOL_LIBRARY entries to draw from (default: all of them), e.g. an easier task for a tiny model.
    """
    if n < 0 or max_tools < 1:
        raise ValueError(f"need n >= 0 and max_tools >= 1, got n={n}, max_tools={max_tools}")
    library = TOOL_LIBRARY
    if tools is not None:
        known = {t["name"] for t in TOOL_LIBRARY}
        unknown = [name for name in tools if name not in known]
        if unknown or not tools:
            raise ValueError(f"unknown tool name(s) {unknown} (known: {sorted(known)})" if unknown
                             else "tools must name at least one tool")
        library = [t for t in TOOL_LIBRARY if t["name"] in set(tools)]
    probs = {"parallel": p_parallel, "no_call": p_no_call, "multiple": p_multiple if max_tools > 1 else 0.0}
    if any(p < 0 for p in probs.values()) or sum(probs.values()) > 1:
        raise ValueError(f"case probabilities must be >= 0 and sum to <= 1, got {probs}")
    probs["single"] = 1.0 - sum(probs.values())
    rng, records = random.Random(seed), []
    for i in range(n):
        case = rng.choices(list(probs), weights=list(probs.values()))[0]
        query, offered, answer = _synthetic_case(rng, case, max_tools, library)
        rng.shuffle(offered)
        records.append({"id": f"synthetic-{seed}-{i}", "source": "synthetic", "case": case,
                        "tools": [copy.deepcopy(t["schema"]) for t in offered],
                        "messages": [{"role": "user", "content": query}], "answer": answer,
                        "allow_empty_call": p_no_call > 0})
    return records
